//! Prints the figures of one `scripts/bench` run as one table: each figure,
//! its goal, the ratio and pass/short.
//!
//! `nixo-bench-table FIGURES_FILE`

use nixo_tests::bench::{Figure, table};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: nixo-bench-table FIGURES_FILE");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("nixo-bench-table: cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    let mut figures = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match Figure::parse(line) {
            Some(f) => figures.push(f),
            None => {
                eprintln!("nixo-bench-table: {path}:{}: not a figure line", n + 1);
                std::process::exit(2);
            }
        }
    }
    let (text, short) = table(&figures);
    print!("{text}");
    println!(
        "\n{} figures with a goal; {short} short of it",
        figures.iter().filter(|f| f.goal.ratio(f.value).is_some()).count()
    );
}
