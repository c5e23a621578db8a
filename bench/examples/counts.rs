//! Prints the configs table of docs/nat.md (params, MACs) and, with `--time`, the forward and
//! forward+backward time of a batch for the small configs at their resolution.
//!     cargo run -p dinonat-bench --release --example counts -- [--time]

use dinonat_engine::{DType, Rng};
use dinonat_model::{Nat, NatConfig};
use std::time::Instant;

fn main() {
    let time = std::env::args().any(|a| a == "--time");
    println!("| name | params (no head) | params (1000-class head) | GMACs at 224 | resolution | MACs there |");
    println!("|---|---|---|---|---|---|");
    for name in NatConfig::NAMES {
        let c = NatConfig::from_name(name).expect("known name");
        let side = match name {
            "nat_pico" => 32,
            "nat_nano" => 64,
            _ => 224,
        };
        println!(
            "| {name} | {:.3} M | {:.3} M | {:.3} | {side} | {:.1} M |",
            c.num_parameters() as f64 / 1e6,
            c.clone().with_classes(1000).num_parameters() as f64 / 1e6,
            c.clone().with_classes(1000).macs(224, 224) as f64 / 1e9,
            c.macs(side, side) as f64 / 1e6
        );
    }
    if !time {
        return;
    }
    for (name, side, batch) in [
        ("nat_pico", 32, 64),
        ("nat_nano", 64, 32),
        ("nat_nano", 32, 64),
    ] {
        let c = NatConfig::from_name(name).expect("known name");
        let nat = Nat::new(&c, DType::F32, 0).expect("builds");
        let mut rng = Rng::new(1);
        let x = rng.normal(&[batch, 3, side, side], 0.0, 1.0, DType::F32);
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let t = Instant::now();
            let y = {
                let _g = dinonat_engine::no_grad();
                nat.forward_features(&x, false, &mut rng).expect("forward")
            };
            let fwd = t.elapsed().as_secs_f64();
            drop(y);
            let t = Instant::now();
            let loss = nat
                .forward_features(&x, true, &mut rng)
                .and_then(|y| Ok(y.mean_all()?))
                .expect("forward");
            loss.backward().expect("backward");
            best = (best.0.min(fwd), best.1.min(t.elapsed().as_secs_f64()));
        }
        println!(
            "{name} at {side} px, batch {batch}: forward {:.0} ms, forward+backward {:.0} ms ({:.0} img/s), {} threads",
            best.0 * 1e3,
            best.1 * 1e3,
            batch as f64 / best.1,
            rayon_threads()
        );
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
