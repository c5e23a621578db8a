use dinonat_model::NatConfig;
fn main() {
    for n in NatConfig::NAMES {
        let c = NatConfig::from_name(n).unwrap();
        let c1 = c.clone().with_classes(1000);
        let r = if c.patch_stride == 2 {
            32
        } else if n == "nat_nano" {
            64
        } else {
            224
        };
        println!(
            "{n}: params {} (+head {}) macs@224 {:.3}G macs@{r} {:.4}G",
            c.num_parameters(),
            c1.num_parameters(),
            c1.macs(224, 224) as f64 / 1e9,
            c.macs(r, r) as f64 / 1e9
        );
    }
}
