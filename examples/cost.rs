//! Per-layer parameters and multiply-adds of a MobileNet, or the standard-vs-separable
//! comparison of one conv.
//!
//! ```text
//! cargo run --release --example cost -- --model v2 --width-mult 1.0 --image-size 224 --num-classes 1000
//! cargo run --release --example cost -- --model v3-large --json
//! cargo run --release --example cost -- --compare --in-channels 3 --out-channels 9 --kernel 3 --image-size 5
//! ```

use std::process::ExitCode;

use burn::backend::NdArray;
use clap::Parser;
use dwconv::cost::{compare_separable, mobilenet_cost};
use dwconv::models::{Architecture, MobileNetConfig};

#[derive(Parser, Debug)]
#[command(about = "Parameter and multiply-add accounting for MobileNets")]
struct Args {
    /// Model (`Architecture::ALL`; an unknown name lists them).
    #[arg(long, default_value = "v2")]
    model: Architecture,
    /// Width multiplier.
    #[arg(long, default_value_t = 1.0, value_parser = parse_width, allow_negative_numbers = true)]
    width_mult: f64,
    /// Square input size in pixels.
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(1..))]
    image_size: u32,
    /// Number of classes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    num_classes: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Compare a standard conv with its depthwise-separable replacement instead.
    #[arg(long, requires_all = ["in_channels", "out_channels"])]
    compare: bool,
    /// With --compare: input channels M.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    in_channels: Option<u32>,
    /// With --compare: output channels N.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    out_channels: Option<u32>,
    /// With --compare: kernel size k.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    kernel: u32,
}

fn parse_width(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if w.is_finite() && w > 0.0 => Ok(w),
        _ => Err(format!("expected a positive number, got '{s}'")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let size = args.image_size as usize;
    if args.compare {
        let (m, n) = (
            args.in_channels.unwrap_or_default() as usize,
            args.out_channels.unwrap_or_default() as usize,
        );
        let c = compare_separable(m, n, args.kernel as usize, [size, size])?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&c)?);
        } else {
            println!(
                "{k}x{k} conv {m} -> {n} on a {size}x{size} map (stride 1, same padding)",
                k = c.kernel
            );
            println!("{:<22}{:>14}{:>16}", "", "params", "multiply-adds");
            println!(
                "{:<22}{:>14}{:>16}",
                "standard", c.standard_params, c.standard_macs
            );
            println!(
                "{:<22}{:>14}{:>16}",
                "depthwise-separable", c.separable_params, c.separable_macs
            );
            println!(
                "ratio {:.4} (1/N + 1/k^2 = {:.4})",
                c.ratio, c.predicted_ratio
            );
        }
        return Ok(());
    }
    let config = MobileNetConfig::new(args.model, args.num_classes as usize)
        .with_width_mult(args.width_mult);
    let model = config.try_init::<NdArray>(&Default::default())?;
    let report = mobilenet_cost(&model, [size, size]);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} width {} at {size}x{size}, {} classes",
        report.model, args.width_mult, args.num_classes
    );
    println!(
        "{:<28}{:>18}{:>12}{:>14}",
        "layer", "output", "params", "MACs"
    );
    for layer in &report.layers {
        let [c, h, w] = layer.output;
        println!(
            "{:<28}{:>18}{:>12}{:>14}",
            layer.name,
            format!("{c}x{h}x{w}"),
            layer.params,
            layer.macs
        );
    }
    println!(
        "{:<28}{:>18}{:>12}{:>14}",
        "total", "", report.params, report.macs
    );
    println!(
        "total: {:.3}M parameters, {:.1}M multiply-adds",
        report.params as f64 / 1e6,
        report.macs as f64 / 1e6
    );
    Ok(())
}
