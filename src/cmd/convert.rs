//! `dinonat convert IN OUT.safetensors`: a weight file of another project (a PyTorch `.pth`, or
//! safetensors under Hugging Face / DINO names) written as a DinoNAT backbone file (docs/pth.md).

use clap::{Args, ValueEnum};
use dinonat_model::checkpoint::load_network_weights;
use dinonat_model::save_backbone;
use dinonat_model::weights::Network;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    Teacher,
    Student,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint to read: `.pth` / `.pt` (zip or legacy torch.save) or safetensors.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// The backbone file to write (safetensors, reference names; written atomically).
    #[arg(value_name = "OUT")]
    output: PathBuf,
    /// Architecture (nat_mini, dinat_tiny, ...). Default: the file's metadata, else inferred from
    /// the shapes (printed).
    #[arg(long, value_name = "NAME")]
    arch: Option<String>,
    /// The network of a DINO training checkpoint.
    #[arg(long, value_enum, default_value = "teacher")]
    which: Which,
}

pub fn run(a: ConvertArgs) -> Result<(), String> {
    dinonat_train::guard::check_outputs(&[("OUT", &a.output)], &[("IN", &a.input)])?;
    if !a.input.is_file() {
        return Err(format!("IN {}: no such file", a.input.display()));
    }
    if a.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(format!(
            "OUT {}: the output is a safetensors file; name it *.safetensors",
            a.output.display()
        ));
    }
    let network = match a.which {
        Which::Teacher => Network::Teacher,
        Which::Student => Network::Student,
    };
    let (nat, notes) =
        load_network_weights(&a.input, a.arch.as_deref(), network).map_err(|e| e.to_string())?;
    for note in notes {
        eprintln!("note: {note}");
    }
    save_backbone(&nat, &a.output).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({}, {} parameters) to {}",
        a.input.display(),
        nat.config.name,
        nat.params
            .iter()
            .map(|(_, p)| p.tensor.shape().iter().product::<usize>())
            .sum::<usize>(),
        a.output.display()
    );
    Ok(())
}
