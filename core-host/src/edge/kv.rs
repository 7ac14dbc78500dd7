//! The key/value store the gateway imports, as Spin provides it:
//! `wasi:keyvalue/store` and `wasi:keyvalue/atomics` at `0.2.0-draft2`
//! (wasmtime's own crate implements an older draft).
//!
//! Two backends: in memory (the default; one process) and Redis
//! (`redis://…`), which several `nixo serve` replicas — and gateways on Spin
//! whose runtime config points at the same Redis — share. `increment` is
//! atomic in both: a mutex in memory, `INCRBY` on Redis, so rate limits hold
//! across concurrent requests and replicas. Values written by `increment`
//! are decimal ASCII, as Redis keeps them.

use super::EdgeState;
use anyhow::Context;
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use wasmtime::component::Resource;

wasmtime::component::bindgen!({
    inline: "
        package wasi:keyvalue@0.2.0-draft2;

        interface store {
            variant error {
                no-such-store,
                access-denied,
                other(string),
            }
            record key-response {
                keys: list<string>,
                cursor: option<string>,
            }
            open: func(identifier: string) -> result<bucket, error>;
            resource bucket {
                get: func(key: string) -> result<option<list<u8>>, error>;
                set: func(key: string, value: list<u8>) -> result<_, error>;
                delete: func(key: string) -> result<_, error>;
                exists: func(key: string) -> result<bool, error>;
                list-keys: func(cursor: option<string>) -> result<key-response, error>;
            }
        }

        interface atomics {
            use store.{bucket, error};
            variant cas-error {
                store-error(error),
                cas-failed(cas),
            }
            resource cas {
                new: static func(bucket: borrow<bucket>, key: string) -> result<cas, error>;
                current: func() -> result<option<list<u8>>, error>;
            }
            increment: func(bucket: borrow<bucket>, key: string, delta: s64) -> result<s64, error>;
            swap: func(cas: cas, value: list<u8>) -> result<_, cas-error>;
        }

        world keyvalue-host {
            import store;
            import atomics;
        }
    ",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
        "wasi:keyvalue/atomics.cas": Cas,
    },
});

pub use wasi::keyvalue::{atomics, store};

/// Where the key/value data lives.
#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>),
    Redis(redis::aio::ConnectionManager),
}

/// The stores a gateway may open, by label (Spin's `key_value_stores`).
#[derive(Clone)]
pub struct KvStores {
    stores: Arc<BTreeMap<String, Backend>>,
}

/// An open store, as the guest holds it.
pub struct Bucket {
    backend: Backend,
}

/// A compare-and-swap handle: the key and the value read when it was made.
pub struct Cas {
    backend: Backend,
    key: String,
    seen: Option<Vec<u8>>,
}

/// How long a Redis connection attempt or command may take before the
/// edge gives up on it (and answers 503).
pub const KV_TIMEOUT_MS: u64 = 1_000;
/// Reconnection attempts per command while Redis is unreachable.
pub const KV_CONNECT_RETRIES: usize = 1;

impl KvStores {
    /// One store named `label`: in memory when `url` is `None`, else Redis.
    pub async fn single(label: &str, url: Option<&str>) -> anyhow::Result<KvStores> {
        let backend = match url {
            None => Backend::Memory(Arc::default()),
            Some(url) => {
                let client = redis::Client::open(url).with_context(|| format!("bad key/value URL {url}"))?;
                // Fail fast while Redis is down (the edge answers 503 at
                // once) and reconnect by itself when it is back.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(KV_CONNECT_RETRIES)
                    .set_max_delay(std::time::Duration::from_millis(KV_TIMEOUT_MS))
                    .set_connection_timeout(Some(std::time::Duration::from_millis(KV_TIMEOUT_MS)))
                    .set_response_timeout(Some(std::time::Duration::from_millis(KV_TIMEOUT_MS)));
                let manager = redis::aio::ConnectionManager::new_with_config(client, config)
                    .await
                    .with_context(|| format!("connecting to the key/value store at {url}"))?;
                Backend::Redis(manager)
            }
        };
        let mut stores = BTreeMap::new();
        stores.insert(label.to_string(), backend);
        Ok(KvStores {
            stores: Arc::new(stores),
        })
    }

    fn open(&self, label: &str) -> Option<Bucket> {
        self.stores.get(label).map(|backend| Bucket {
            backend: backend.clone(),
        })
    }
}

fn other(err: impl std::fmt::Display) -> store::Error {
    store::Error::Other(err.to_string())
}

fn locked(map: &Mutex<HashMap<String, Vec<u8>>>) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
    // A panic while holding the lock cannot leave a half-written entry: every
    // critical section is a single map operation.
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Backend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, store::Error> {
        match self {
            Backend::Memory(map) => Ok(locked(map).get(key).cloned()),
            Backend::Redis(conn) => conn.clone().get(key).await.map_err(other),
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), store::Error> {
        match self {
            Backend::Memory(map) => {
                locked(map).insert(key.to_string(), value.to_vec());
                Ok(())
            }
            Backend::Redis(conn) => conn.clone().set(key, value).await.map_err(other),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), store::Error> {
        match self {
            Backend::Memory(map) => {
                locked(map).remove(key);
                Ok(())
            }
            Backend::Redis(conn) => conn.clone().del(key).await.map_err(other),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, store::Error> {
        match self {
            Backend::Memory(map) => Ok(locked(map).contains_key(key)),
            Backend::Redis(conn) => conn.clone().exists(key).await.map_err(other),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, store::Error> {
        match self {
            Backend::Memory(map) => {
                let mut keys: Vec<String> = locked(map).keys().cloned().collect();
                keys.sort();
                Ok(keys)
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let mut keys: Vec<String> = Vec::new();
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await
                        .map_err(other)?;
                    keys.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                keys.sort();
                Ok(keys)
            }
        }
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, store::Error> {
        match self {
            Backend::Memory(map) => {
                let mut map = locked(map);
                let current = match map.get(key) {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or_else(|| other("value is not an integer"))?,
                };
                let next = current.checked_add(delta).ok_or_else(|| other("increment overflows"))?;
                map.insert(key.to_string(), next.to_string().into_bytes());
                Ok(next)
            }
            Backend::Redis(conn) => conn.clone().incr(key, delta).await.map_err(other),
        }
    }

    /// Sets `key` to `value` if it still holds `seen`; `false` if it changed.
    async fn compare_and_set(&self, key: &str, seen: Option<&[u8]>, value: &[u8]) -> Result<bool, store::Error> {
        match self {
            Backend::Memory(map) => {
                let mut map = locked(map);
                if map.get(key).map(Vec::as_slice) != seen {
                    return Ok(false);
                }
                map.insert(key.to_string(), value.to_vec());
                Ok(true)
            }
            Backend::Redis(conn) => {
                // One script: Redis runs it atomically.
                let script = redis::Script::new(
                    "local cur = redis.call('GET', KEYS[1])
                     if (ARGV[1] == '0' and cur == false) or (ARGV[1] == '1' and cur == ARGV[2]) then
                       redis.call('SET', KEYS[1], ARGV[3]) return 1
                     end
                     return 0",
                );
                let (had, seen) = match seen {
                    Some(bytes) => ("1", bytes),
                    None => ("0", &[][..]),
                };
                let done: i64 = script
                    .key(key)
                    .arg(had)
                    .arg(seen)
                    .arg(value)
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(other)?;
                Ok(done == 1)
            }
        }
    }
}

type Trappable<T> = wasmtime::Result<T>;

impl store::Host for EdgeState {
    async fn open(&mut self, identifier: String) -> Trappable<Result<Resource<Bucket>, store::Error>> {
        let (stores, table) = self.kv();
        let Some(bucket) = stores.open(&identifier) else {
            return Ok(Err(store::Error::NoSuchStore));
        };
        Ok(Ok(table.push(bucket)?))
    }
}

fn backend(host: &mut EdgeState, bucket: &Resource<Bucket>) -> wasmtime::Result<Backend> {
    let (_, table) = host.kv();
    Ok(table.get(bucket)?.backend.clone())
}

impl store::HostBucket for EdgeState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Trappable<Result<Option<Vec<u8>>, store::Error>> {
        Ok(backend(self, &bucket)?.get(&key).await)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Trappable<Result<(), store::Error>> {
        Ok(backend(self, &bucket)?.set(&key, &value).await)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Trappable<Result<(), store::Error>> {
        Ok(backend(self, &bucket)?.delete(&key).await)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Trappable<Result<bool, store::Error>> {
        Ok(backend(self, &bucket)?.exists(&key).await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        _cursor: Option<String>,
    ) -> Trappable<Result<store::KeyResponse, store::Error>> {
        // One page holds every key, as Spin answers.
        let keys = backend(self, &bucket)?.keys().await;
        Ok(keys.map(|keys| store::KeyResponse { keys, cursor: None }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        let (_, table) = self.kv();
        table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for EdgeState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Trappable<Result<i64, store::Error>> {
        Ok(backend(self, &bucket)?.increment(&key, delta).await)
    }

    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Trappable<Result<(), atomics::CasError>> {
        let (_, table) = self.kv();
        let handle = table.get(&cas)?;
        let (backend, key, seen) = (handle.backend.clone(), handle.key.clone(), handle.seen.clone());
        match backend.compare_and_set(&key, seen.as_deref(), &value).await {
            Ok(true) => {
                let (_, table) = self.kv();
                table.delete(cas)?;
                Ok(Ok(()))
            }
            Ok(false) => Ok(Err(atomics::CasError::CasFailed(cas))),
            Err(err) => {
                let (_, table) = self.kv();
                table.delete(cas)?;
                Ok(Err(atomics::CasError::StoreError(err)))
            }
        }
    }
}

impl atomics::HostCas for EdgeState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> Trappable<Result<Resource<Cas>, store::Error>> {
        let backend = backend(self, &bucket)?;
        let seen = match backend.get(&key).await {
            Ok(seen) => seen,
            Err(err) => return Ok(Err(err)),
        };
        let (_, table) = self.kv();
        Ok(Ok(table.push(Cas { backend, key, seen })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Trappable<Result<Option<Vec<u8>>, store::Error>> {
        let (_, table) = self.kv();
        Ok(Ok(table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        let (_, table) = self.kv();
        table.delete(cas)?;
        Ok(())
    }
}

/// Adds both interfaces to a linker.
pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<EdgeState>) -> anyhow::Result<()> {
    type Data = wasmtime::component::HasSelf<EdgeState>;
    store::add_to_linker::<EdgeState, Data>(linker, |t| t)?;
    atomics::add_to_linker::<EdgeState, Data>(linker, |t| t)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same behaviour from either backend; keys are prefixed so runs
    /// against a shared Redis do not meet.
    async fn counts_and_swaps(b: &Backend, prefix: &str) {
        let k = |name: &str| format!("{prefix}{name}");
        assert_eq!(b.increment(&k("n"), 1).await.unwrap(), 1);
        assert_eq!(b.increment(&k("n"), 5).await.unwrap(), 6);
        assert_eq!(b.get(&k("n")).await.unwrap(), Some(b"6".to_vec()));
        b.set(&k("s"), b"x").await.unwrap();
        assert!(b.increment(&k("s"), 1).await.is_err());
        assert!(b.compare_and_set(&k("s"), Some(b"x"), b"y").await.unwrap());
        assert!(!b.compare_and_set(&k("s"), Some(b"x"), b"z").await.unwrap());
        assert_eq!(b.get(&k("s")).await.unwrap(), Some(b"y".to_vec()));
        assert!(b.compare_and_set(&k("new"), None, b"1").await.unwrap());
        assert!(!b.compare_and_set(&k("new"), None, b"2").await.unwrap());
        let keys = b.keys().await.unwrap();
        for name in ["n", "new", "s"] {
            assert!(keys.contains(&k(name)), "{name} listed");
        }
        for name in ["n", "new", "s"] {
            b.delete(&k(name)).await.unwrap();
            assert!(!b.exists(&k(name)).await.unwrap());
        }
    }

    #[tokio::test]
    async fn the_redis_backend_behaves_like_the_memory_one() {
        let url = "redis://127.0.0.1:6379/";
        let reachable = tokio::net::TcpStream::connect("127.0.0.1:6379").await.is_ok();
        if !reachable {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "Redis is required in CI but not reachable at {url}"
            );
            eprintln!("\n*** SKIPPED: Redis is not reachable at {url}\n");
            return;
        }
        let stores = KvStores::single("default", Some(url)).await.unwrap();
        let bucket = stores.open("default").unwrap();
        let prefix = format!("nixo-test:{}:{}:", std::process::id(), rand::random::<u64>());
        counts_and_swaps(&bucket.backend, &prefix).await;
    }

    #[tokio::test]
    async fn memory_backend_counts_and_swaps() {
        let stores = KvStores::single("default", None).await.unwrap();
        assert!(stores.open("other").is_none());
        let bucket = stores.open("default").unwrap();
        counts_and_swaps(&bucket.backend, "").await;
        let b = &bucket.backend;
        b.set("b", b"1").await.unwrap();
        b.set("a", b"1").await.unwrap();
        assert_eq!(b.keys().await.unwrap(), vec!["a", "b"], "sorted, one page");
    }
}
