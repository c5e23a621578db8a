//! Pins the first values of every seeded stream (the engine's tensor `Rng` and the data loader's
//! `SplitMix64`), so that a refactor of the generators keeps every seeded result bit for bit.

use dinonat_engine::rng::mix64;
use dinonat_engine::{DType, Rng, RowWindow, SplitMix64};

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn engine_stream() -> Vec<u64> {
    let mut r = Rng::new(42);
    let mut out = bits(&r.uniform_vec(3));
    out.extend(bits(&r.normal_vec(3)));
    out.extend((0..3).map(|_| r.below(1000)));
    out.extend(bits(&r.fork().uniform_vec(2)));
    let t = r
        .trunc_normal(&[3], 0.0, 0.02, -0.04, 0.04, DType::F64)
        .unwrap();
    out.extend(bits(&t.to_vec_f64()));
    let t = r.uniform(&[2], -1.0, 1.0, DType::F32);
    out.extend(t.to_vec_f64().iter().map(|x| (*x as f32).to_bits() as u64));
    let t = r.normal(&[2], 1.0, 2.0, DType::F64);
    out.extend(bits(&t.to_vec_f64()));
    let window = RowWindow {
        local: 2,
        global: 4,
        offset: 2,
    };
    out.extend(bits(&Rng::new(9).with_rows(window).uniform_rows(4)));
    out
}

fn loader_stream() -> Vec<u64> {
    let mut out = vec![mix64(12345)];
    let mut r = SplitMix64::keyed(&[1, 2, 3]);
    out.extend((0..3).map(|_| r.next_u64()));
    let mut s = SplitMix64::for_sample(7, 0, 5);
    out.push(s.next_f64().to_bits());
    out.push(s.uniform(-2.0, 3.0).to_bits());
    out.push(s.range(-5, 17) as u64);
    out.push(s.bernoulli(0.3) as u64);
    out.push(s.normal().to_bits());
    out.push(s.fork(3).next_u64());
    out.push(s.next_u64());
    out.extend(s.permutation(8).iter().map(|&i| i as u64));
    out
}

/// Printed by this file's functions before the generators were merged; a change here changes every
/// seeded weight, crop and data order of the project.
const ENGINE: [u64; 22] = [
    4605296803751308030,
    4587687580485321632,
    4598585442784453850,
    4586252021642180703,
    4599080282760293258,
    13830565444068078774,
    291,
    459,
    68,
    4604212889614129849,
    4595336781506402680,
    13805645151668604488,
    13804153630432805191,
    4568282006071663224,
    1048382042,
    3200963856,
    13826070151369719016,
    4612931597651237711,
    4606423839097064206,
    4605445938467039794,
    4591398895465033408,
    4590473662505780320,
];
const LOADER: [u64; 19] = [
    17540659726606785873,
    16503788564727858183,
    8384181579185207790,
    12221509310661359042,
    4586620861640573808,
    4613214107332555518,
    1,
    0,
    4603983676085112888,
    15666064603186605573,
    2303641620579882472,
    2,
    0,
    3,
    1,
    5,
    4,
    6,
    7,
];

#[test]
fn the_tensor_stream_is_pinned() {
    assert_eq!(engine_stream(), ENGINE);
}

#[test]
fn the_data_loader_stream_is_pinned() {
    assert_eq!(loader_stream(), LOADER);
}
