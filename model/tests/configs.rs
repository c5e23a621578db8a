//! Parameter counts and MACs of the reference configs (the paper's figures, with the 1000-class
//! head), and the built network against the config's list of names and shapes.

use dinonat_engine::DType;
use dinonat_model::{DilationSchedule, Nat, NatConfig};

/// Rounds to the precision the paper reports: params in M with one decimal, GMACs with two.
fn millions(n: usize) -> String {
    format!("{:.1}", n as f64 / 1e6)
}

#[test]
fn reference_configs_have_the_papers_parameter_counts_and_macs() {
    let expected = [
        ("nat_mini", "20.0", "2.69"),
        ("nat_tiny", "27.9", "4.30"),
        ("nat_small", "50.7", "7.77"),
        ("nat_base", "89.8", "13.68"),
    ];
    for (name, params, gmacs) in expected {
        let c = NatConfig::from_name(name).unwrap().with_classes(1000);
        assert_eq!(millions(c.num_parameters()), params, "{name} params");
        assert_eq!(
            format!("{:.2}", c.macs(224, 224) as f64 / 1e9),
            gmacs,
            "{name} GMACs"
        );
    }
}

#[test]
fn built_network_matches_the_config_count_names_and_shapes() {
    let c = NatConfig::nat_mini().with_classes(1000);
    let nat = Nat::new(&c, DType::F32, 0).unwrap();
    assert_eq!(nat.params.num_elements(), c.num_parameters());
    let mut want = c.parameter_shapes();
    want.sort();
    let got: Vec<(String, Vec<usize>)> = nat
        .params
        .iter()
        .map(|(n, p)| (n.to_string(), p.tensor.shape().to_vec()))
        .collect();
    assert_eq!(got, want);
    // the names of docs/nat.md
    for n in [
        "patch_embed.proj.0.weight",
        "levels.0.blocks.2.attn.qkv.weight",
        "levels.3.blocks.4.attn.rpb",
        "levels.2.downsample.reduction.weight",
        "levels.1.blocks.0.mlp.fc2.bias",
        "norm.weight",
        "head.weight",
    ] {
        assert!(nat.params.contains(n), "{n}");
    }
    assert!(!nat.params.contains("levels.3.downsample.norm.weight"));
    let small = NatConfig::nat_small();
    assert!(small
        .parameter_shapes()
        .iter()
        .any(|(n, s)| n == "levels.0.blocks.0.gamma1" && s == &[96]));
    // drop path rises linearly over all 30 blocks of nat_tiny
    let t = NatConfig::nat_tiny();
    assert_eq!(t.drop_path_rate(0), 0.0);
    assert!((t.drop_path_rate(29) - 0.2).abs() < 1e-12);
}

#[test]
fn names_and_validation_errors() {
    let d = NatConfig::from_name("dinat_nano").unwrap();
    assert!(matches!(
        d.attention,
        dinonat_model::AttentionKind::Neighborhood {
            dilation: DilationSchedule::DiNat,
            ..
        }
    ));
    // DiNAT at 224: dilations 8, 4, 2, 1 on the odd blocks of the four levels, 1 on the even ones
    let dil: Vec<[usize; 2]> = NatConfig::nat_mini()
        .level_sizes(224, 224)
        .iter()
        .map(|&(h, w)| DilationSchedule::DiNat.dilation(1, 7, h, w))
        .collect();
    assert_eq!(dil, [[8, 8], [4, 4], [2, 2], [1, 1]]);
    assert_eq!(DilationSchedule::DiNat.dilation(2, 7, 56, 56), [1, 1]);
    let f = NatConfig::from_name("nat_pico_full").unwrap();
    assert_eq!(f.attention, dinonat_model::AttentionKind::Full);
    assert!(!f.parameter_shapes().iter().any(|(n, _)| n.ends_with("rpb")));
    let e = NatConfig::from_name("nat_huge").unwrap_err().to_string();
    assert!(e.contains("nat_huge") && e.contains("nat_mini"), "{e}");
    let mut bad = NatConfig::nat_nano();
    bad.heads[1] = 3;
    let e = Nat::new(&bad, DType::F32, 0).unwrap_err().to_string();
    assert!(e.contains("level 1") && e.contains("3 heads"), "{e}");
}
