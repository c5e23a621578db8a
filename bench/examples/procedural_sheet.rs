//! A contact sheet of the built-in procedural images, each beside its thermal twin:
//! `cargo run --release -p dinonat-bench --example procedural_sheet -- OUT.png [N] [SIZE]`.
use dinonat_train::data::{Dataset, Procedural};
use dinonat_train::grid::write_image_grid;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map(String::as_str).unwrap_or("procedural.png");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let d = Procedural::new(0, n, size);
    let mut images = Vec::new();
    for i in 0..n {
        images.push(d.get(i).expect("procedural image").image);
        images.push(d.thermal(i));
    }
    if let Err(e) = write_image_grid(out, &images, 10, 2) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
