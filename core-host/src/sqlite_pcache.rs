//! SQLite's own page cache, with one needless cost taken out: the scan of
//! the whole cache at the end of almost every ledger commit.
//!
//! At the end of each transaction SQLite asks its page cache to drop every
//! page past the end of the database (`xTruncate`). The cache remembers the
//! largest page number it has held since the last such call, and when that
//! number lies more pages past the end than its hash table has slots, it
//! walks the whole table — every page it holds — instead of the few slots
//! past the end. When a B-tree page splits, SQLite keeps the new siblings in
//! page order by swapping two page numbers through a temporary one: the page
//! number of the lock byte at 1 GiB (262,145 with 4 KiB pages), which no
//! real page ever has. That remembered maximum then sits far past the end of
//! any database under 1 GiB, so the next truncation walks everything. The
//! ledger's inserts into indexes of random keys (the ledger's idempotency
//! identities, idempotency keys) split pages often, and the ledger writer
//! keeps a large cache ([`crate::sqlite_direct::WRITER_PAGE_CACHE_KIB`]):
//! under 16 connections of transfers about a third of its commits walked
//! all of its ≈ 8,000 cached pages, 9 % of the writer thread's time, the
//! largest single item after SQLite's own statement engine.
//!
//! This cache passes every call to SQLite's built-in one, and keeps for each
//! cache the largest page number a page can hold now, leaving out the
//! temporary one (tracked apart: whether a page holds it at the moment). A
//! truncation at or past that number, with no page on the temporary number,
//! has nothing to drop and is not passed on. Every other truncation is (a
//! rollback of a transaction that grew the file, a cache cleared because
//! another connection wrote), and lowers the number as SQLite's does.

#![allow(unsafe_code)]

use rusqlite::ffi;
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where SQLite keeps its lock bytes in every database file (its default
/// `PENDING_BYTE`, fixed by the file format): the page holding it is never
/// used for data, and serves as the temporary page number of a swap.
const PENDING_BYTE: c_uint = 0x4000_0000;

/// SQLite's built-in cache, which every call is passed to.
struct Builtin(ffi::sqlite3_pcache_methods2);

// The methods are plain C functions and SQLite's own context pointer, set
// once before any cache exists and only read afterwards.
unsafe impl Send for Builtin {}
unsafe impl Sync for Builtin {}

static BUILTIN: OnceLock<Builtin> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();
static TRUNCATIONS_SKIPPED: AtomicU64 = AtomicU64::new(0);
static TEMPORARY_REKEYS: AtomicU64 = AtomicU64::new(0);

/// One cache: SQLite's, and what this one knows of the page numbers in it.
/// SQLite calls a cache's methods under the lock of the one connection that
/// owns it, never two at once.
struct Cache {
    builtin: *mut ffi::sqlite3_pcache,
    /// No page in the cache has a larger number (except [`Cache::temporary`]).
    max_page: c_uint,
    /// The lock-byte page number for this cache's page size.
    temporary: c_uint,
    /// Whether a page may be on the temporary number now.
    temporary_held: bool,
}

impl Cache {
    fn saw(&mut self, page: c_uint) {
        if page == self.temporary {
            self.temporary_held = true;
        } else {
            self.max_page = self.max_page.max(page);
        }
    }
}

/// Installs this cache for every SQLite connection the process opens from
/// now on; whether it is in use. It must come before SQLite's first use in
/// the process (SQLite refuses the change afterwards, and then keeps its own
/// cache unchanged): every door to SQLite in this crate ([`crate::db::Db::open`],
/// [`crate::sqlite_direct`]) calls it first. Safe to call any number of times.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        let mut builtin = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
        // SAFETY: GETPCACHE2 writes SQLite's current methods (its built-in
        // cache, before initialisation) into the struct it is given.
        let got = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, builtin.as_mut_ptr()) };
        if got != ffi::SQLITE_OK {
            return false;
        }
        // SAFETY: written by SQLite just above (zeroed otherwise).
        let builtin = unsafe { builtin.assume_init() };
        let complete = builtin.xCreate.is_some()
            && builtin.xCachesize.is_some()
            && builtin.xPagecount.is_some()
            && builtin.xFetch.is_some()
            && builtin.xUnpin.is_some()
            && builtin.xRekey.is_some()
            && builtin.xTruncate.is_some()
            && builtin.xDestroy.is_some();
        if !complete || BUILTIN.set(Builtin(builtin)).is_err() {
            return false;
        }
        let ours = ffi::sqlite3_pcache_methods2 {
            iVersion: 1,
            pArg: std::ptr::null_mut(),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            xCreate: Some(create),
            xCachesize: Some(cachesize),
            xPagecount: Some(pagecount),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: Some(shrink),
        };
        // SAFETY: SQLite copies the methods; it is not initialised yet (else
        // it answers SQLITE_MISUSE and keeps its own).
        unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &ours as *const ffi::sqlite3_pcache_methods2)
                == ffi::SQLITE_OK
        }
    })
}

/// Truncations with nothing to drop that were not passed on, since start.
pub fn truncations_skipped() -> u64 {
    TRUNCATIONS_SKIPPED.load(Ordering::Relaxed)
}

/// Pages moved to the temporary page number (B-tree splits), since start.
pub fn temporary_rekeys() -> u64 {
    TEMPORARY_REKEYS.load(Ordering::Relaxed)
}

fn builtin() -> &'static ffi::sqlite3_pcache_methods2 {
    &BUILTIN.get().expect("the page cache is installed only with SQLite's").0
}

/// # Safety
/// `cache` is a pointer [`create`] returned and [`destroy`] has not freed.
unsafe fn cache<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    // SAFETY: per the caller; SQLite never calls one cache from two threads at once.
    unsafe { &mut *cache.cast::<Cache>() }
}

unsafe extern "C" fn init(_arg: *mut c_void) -> c_int {
    let b = builtin();
    // SAFETY: SQLite's own method, with its own context pointer.
    b.xInit.map_or(ffi::SQLITE_OK, |f| unsafe { f(b.pArg) })
}

unsafe extern "C" fn shutdown(_arg: *mut c_void) {
    let b = builtin();
    if let Some(f) = b.xShutdown {
        // SAFETY: as in `init`.
        unsafe { f(b.pArg) }
    }
}

unsafe extern "C" fn create(page_size: c_int, extra: c_int, purgeable: c_int) -> *mut ffi::sqlite3_pcache {
    let create = builtin().xCreate.expect("checked at install");
    // SAFETY: SQLite's own method, with SQLite's arguments.
    let inner = unsafe { create(page_size, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let temporary = match c_uint::try_from(page_size) {
        Ok(size) if size > 0 => PENDING_BYTE / size + 1,
        _ => 0,
    };
    Box::into_raw(Box::new(Cache {
        builtin: inner,
        max_page: 0,
        temporary,
        temporary_held: false,
    }))
    .cast()
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    // SAFETY: `p` comes from `create` (SQLite's contract for every method below).
    let c = unsafe { cache(p) };
    // SAFETY: SQLite's own method on its own cache.
    unsafe { builtin().xCachesize.expect("checked at install")(c.builtin, pages) }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    // SAFETY: as in `cachesize`.
    unsafe { builtin().xPagecount.expect("checked at install")(c.builtin) }
}

unsafe extern "C" fn fetch(p: *mut ffi::sqlite3_pcache, key: c_uint, create: c_int) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    // SAFETY: as in `cachesize`.
    let page = unsafe { builtin().xFetch.expect("checked at install")(c.builtin, key, create) };
    if !page.is_null() {
        c.saw(key);
    }
    page
}

unsafe extern "C" fn unpin(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, discard: c_int) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    // SAFETY: as in `cachesize`; a discarded page leaves the cache, so the
    // number kept stays a bound.
    unsafe { builtin().xUnpin.expect("checked at install")(c.builtin, page, discard) }
}

unsafe extern "C" fn rekey(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, old: c_uint, new: c_uint) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    // SAFETY: as in `cachesize`.
    unsafe { builtin().xRekey.expect("checked at install")(c.builtin, page, old, new) };
    if old == c.temporary {
        c.temporary_held = false;
    }
    if new == c.temporary {
        TEMPORARY_REKEYS.fetch_add(1, Ordering::Relaxed);
    }
    c.saw(new);
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    // Every page numbered `limit` or more is to go: none is when the largest
    // is below it and no page is on the temporary number.
    if limit > c.max_page && !c.temporary_held {
        TRUNCATIONS_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: as in `cachesize`.
    unsafe { builtin().xTruncate.expect("checked at install")(c.builtin, limit) };
    c.max_page = c.max_page.min(limit.saturating_sub(1));
    if limit <= c.temporary {
        c.temporary_held = false;
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: `p` comes from `create` and SQLite uses it no more after this.
    let c = unsafe { Box::from_raw(p.cast::<Cache>()) };
    // SAFETY: SQLite's own method on its own cache, destroyed once.
    unsafe { builtin().xDestroy.expect("checked at install")(c.builtin) }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: as in `cachesize`.
    let c = unsafe { cache(p) };
    if let Some(f) = builtin().xShrink {
        // SAFETY: as in `cachesize`.
        unsafe { f(c.builtin) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Bind;
    use crate::sqlite_direct::Direct;

    fn count(conn: &mut Direct, sql: &str) -> i64 {
        let (rows, _) = conn.run(sql, &[]).unwrap();
        rows[0].int(0).unwrap()
    }

    #[test]
    fn commits_that_split_pages_skip_the_cache_scan_yet_rollbacks_and_other_writers_still_empty_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pcache.db");
        let mut conn = Direct::open_writer(&path).unwrap();
        assert!(install(), "SQLite was used before the first door to it in this process");
        conn.control("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
            .unwrap();

        // Random keys: inserts land all over the index, and pages split.
        let (skipped, rekeyed) = (truncations_skipped(), temporary_rekeys());
        let mut total = 0i64;
        for batch in 0..300i64 {
            conn.control("BEGIN IMMEDIATE").unwrap();
            for i in 0..100i64 {
                let key = format!("{:032x}", rand::random::<u128>());
                let binds: [Bind; 2] = [key.into(), (batch * 100 + i).into()];
                conn.run("INSERT INTO t (k, v) VALUES ($1, $2)", &binds).unwrap();
                total += batch * 100 + i;
            }
            conn.control("COMMIT").unwrap();
        }
        assert!(
            temporary_rekeys() > rekeyed,
            "no split swapped pages through the lock-byte page"
        );
        assert!(
            truncations_skipped() >= skipped + 300,
            "the commits' truncations were passed on"
        );

        // A transaction that grows the file, rolled back: its new pages are
        // past the end again and must leave the cache.
        let pages = count(&mut conn, "PRAGMA page_count");
        conn.control("BEGIN IMMEDIATE").unwrap();
        for i in 0..5_000i64 {
            let binds: [Bind; 2] = [format!("{:032x}", rand::random::<u128>()).into(), (-i).into()];
            conn.run("INSERT INTO t (k, v) VALUES ($1, $2)", &binds).unwrap();
        }
        assert!(count(&mut conn, "PRAGMA page_count") > pages);
        conn.control("ROLLBACK").unwrap();
        assert_eq!(count(&mut conn, "PRAGMA page_count"), pages);

        // The file grows over the same page numbers again; what was rolled
        // back must not come back from the cache.
        conn.control("BEGIN IMMEDIATE").unwrap();
        for i in 0..2_000i64 {
            let binds: [Bind; 2] = [format!("{:032x}", rand::random::<u128>()).into(), i.into()];
            conn.run("INSERT INTO t (k, v) VALUES ($1, $2)", &binds).unwrap();
            total += i;
        }
        conn.control("COMMIT").unwrap();

        // Another connection writes: this one's cache must be cleared, not
        // read back stale.
        let mut other = Direct::open_writer(&path).unwrap();
        assert_eq!(count(&mut conn, "SELECT SUM(v) FROM t"), total);
        other.control("UPDATE t SET v = v + 1").unwrap();
        total += 32_000;
        for conn in [&mut conn, &mut other] {
            assert_eq!(count(conn, "SELECT COUNT(*) FROM t"), 32_000);
            assert_eq!(count(conn, "SELECT SUM(v) FROM t"), total);
            assert_eq!(count(conn, "SELECT COUNT(*) FROM t WHERE v < 0"), 0);
            let (rows, _) = conn.run("PRAGMA integrity_check", &[]).unwrap();
            assert_eq!(rows[0].text(0).unwrap(), "ok");
        }
    }
}
