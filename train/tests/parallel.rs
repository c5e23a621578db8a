//! Data-parallel DINO on a world of threads (trainer/parallel.rs, docs/distributed.md): with the
//! same global batch and KoLeo off, n ranks train what one rank trains — the loss of every step and
//! the final networks agree to rounding.

use dinonat_train::dino::Centering;
use dinonat_train::dist::ThreadWorld;
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::network::named_tensors;
use dinonat_train::trainer::Trainer;
use std::path::PathBuf;

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-parallel-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// nat_pico on 16 / 8 px crops, K = 64, global batch 32, drop path on, KoLeo off.
fn config(name: &str, steps: usize, centering: Centering) -> TrainConfig {
    TrainConfig {
        arch: "nat_pico".into(),
        out_dim: 64,
        head_hidden_dim: 32,
        head_bottleneck_dim: 16,
        procedural_len: 96,
        procedural_size: 24,
        global_size: 16,
        local_size: 8,
        n_local: 2,
        batch_size: 32,
        steps,
        base_lr: 0.05,
        drop_path: 0.2,
        koleo: 0.0,
        centering,
        checkpoint_every: 0,
        out_dir: tmp_dir(name),
        ..TrainConfig::default()
    }
}

/// Per-step losses and the final teacher's values of a run on `world` ranks, the all-reduce
/// overlapped with the backward in buckets of `overlap` bytes (None: after the backward).
fn run(
    world: usize,
    name: &str,
    steps: usize,
    centering: Centering,
    overlap: Option<usize>,
) -> (Vec<f64>, Vec<f32>, Vec<f64>) {
    let mut out = ThreadWorld::run(world, |comm| {
        let mut t = Trainer::new(config(name, steps, centering)).unwrap();
        t.set_collective(std::rc::Rc::new(comm)).unwrap();
        t.set_overlap(overlap);
        assert_eq!(t.overlap(), overlap.filter(|_| world > 1));
        let losses: Vec<f64> = t
            .run(None, |_| {})
            .unwrap()
            .iter()
            .map(|l| l.loss)
            .collect();
        let teacher: Vec<f32> = named_tensors(&t.teacher, "teacher")
            .iter()
            .flat_map(|(_, x)| x.to_vec::<f32>().unwrap())
            .collect();
        (losses, teacher, t.loss.center.clone())
    });
    // every rank ends with the same networks
    for other in &out[1..] {
        assert_eq!(other.1, out[0].1, "ranks disagree on the teacher");
        assert_eq!(other.0, out[0].0, "ranks disagree on the logged loss");
    }
    out.swap_remove(0)
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (d / n).sqrt()
}

fn check(centering: Centering, steps: usize, tag: &str) {
    let bucket = Some(dinonat_train::trainer::DEFAULT_BUCKET_BYTES);
    let (l1, t1, c1) = run(1, &format!("{tag}-1"), steps, centering, bucket);
    let worlds: &[usize] = if centering == Centering::Center {
        &[2, 4]
    } else {
        &[2]
    };
    for &world in worlds {
        let (ln, tn, cn) = run(world, &format!("{tag}-{world}"), steps, centering, bucket);
        assert_eq!(ln.len(), steps);
        for (s, (a, b)) in l1.iter().zip(&ln).enumerate() {
            assert!(
                ((a - b) / a).abs() < 1e-5,
                "{world} ranks, step {}: loss {b} vs {a} on one rank",
                s + 1
            );
        }
        let r = rel(&t1, &tn);
        let worst = l1
            .iter()
            .zip(&ln)
            .map(|(a, b)| ((a - b) / a).abs())
            .fold(0.0, f64::max);
        println!(
            "{tag}: {world} ranks vs 1: loss relative difference <= {worst:.2e}, teacher {r:.2e}"
        );
        assert!(r < 1e-4, "{world} ranks: teacher relative difference {r}");
        let dc: f64 = c1
            .iter()
            .zip(&cn)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(dc < 1e-4, "{world} ranks: centre differs by {dc}");
        // and the run is not trivially equal because nothing trained
        assert!(l1[0] != l1[steps - 1]);
    }
}

#[test]
fn ranks_train_what_one_rank_trains_with_the_running_centre() {
    check(Centering::Center, 20, "center");
}

#[test]
fn ranks_train_what_one_rank_trains_with_sinkhorn_knopp() {
    check(Centering::SinkhornKnopp, 8, "sk");
}

#[test]
fn the_overlapped_all_reduce_gives_the_bits_of_the_one_after_the_backward() {
    // trainer/overlap.rs: buckets of 20 kB (nat_pico's 0.1 M parameters in many buckets, some
    // parameters larger than a bucket) vs one all-reduce after the backward
    for world in [2, 4] {
        let after = run(world, &format!("after-{world}"), 4, Centering::Center, None);
        let overlapped = run(
            world,
            &format!("overlap-{world}"),
            4,
            Centering::Center,
            Some(20_000),
        );
        assert_eq!(overlapped.0, after.0, "{world} ranks: losses");
        assert_eq!(overlapped.1, after.1, "{world} ranks: teacher");
        assert_eq!(overlapped.2, after.2, "{world} ranks: centre");
        assert!(after.0[0] != after.0[3], "nothing trained");
    }
}

#[test]
fn a_batch_that_does_not_split_evenly_is_refused() {
    let errs = ThreadWorld::run(3, |comm| {
        let mut t = Trainer::new(config("uneven", 2, Centering::Center)).unwrap();
        t.set_collective(std::rc::Rc::new(comm))
            .unwrap_err()
            .to_string()
    });
    for e in errs {
        assert!(e.contains("batch_size") && e.contains("3 ranks"), "{e}");
    }
}
