//! Parameter and multiply-add accounting against published figures.

use burn::backend::NdArray;
use burn::module::Module;
use dwconv::cost::{compare_separable, mobilenet_cost};
use dwconv::models::{Architecture, MobileNetConfig};

fn cost(arch: Architecture, width: f64) -> (usize, u64) {
    let model = MobileNetConfig::new(arch, 1000)
        .with_width_mult(width)
        .init::<NdArray>(&Default::default());
    let report = mobilenet_cost(&model, [224, 224]);
    (report.params, report.macs)
}

fn assert_within(what: &str, actual: f64, published: f64, tolerance: f64) {
    let rel = (actual - published).abs() / published;
    assert!(
        rel <= tolerance,
        "{what}: {actual} vs published {published} ({:.2}% off, allowed {:.1}%)",
        rel * 100.0,
        tolerance * 100.0
    );
}

/// torchvision's `sum(p.numel() for p in model.parameters())` (Keras' trainable count for
/// V1) with 1000 classes at width 1.0, and the papers' multiply-adds at 224x224.
#[test]
fn width_one_matches_torchvision_and_papers() {
    let published = [
        (Architecture::V1, 4_231_976, 569e6),
        (Architecture::V2, 3_504_872, 300.8e6),
        (Architecture::V3Large, 5_483_032, 216.6e6),
        (Architecture::V3Small, 2_542_856, 56.5e6),
    ];
    for (arch, params, macs) in published {
        let (p, m) = cost(arch, 1.0);
        assert_eq!(p, params, "{arch} parameters");
        assert_within(&format!("{arch} multiply-adds"), m as f64, macs, 0.01);
    }
}

/// Other widths follow each variant's rounding: the MobileNetV1 paper (table 6) and the
/// TF-slim MobileNetV2 table (same `make_divisible` rule as torchvision).
#[test]
fn width_multipliers_match_published_tables() {
    // (width, parameters in millions to 0.1M, multiply-adds in millions)
    for (width, params_m, macs_m) in [(0.75, 2.6, 325.0), (0.5, 1.3, 149.0), (0.25, 0.5, 41.0)] {
        let (p, m) = cost(Architecture::V1, width);
        assert_eq!(
            (p as f64 / 1e5).round() / 10.0,
            params_m,
            "V1 {width} params {p}"
        );
        assert_within(&format!("V1 {width} MACs"), m as f64, macs_m * 1e6, 0.01);
    }
    for (width, macs_m) in [
        (1.4, 582.0),
        (1.3, 509.0),
        (0.75, 209.0),
        (0.5, 97.0),
        (0.35, 59.0),
    ] {
        let (_, m) = cost(Architecture::V2, width);
        assert_within(&format!("V2 {width} MACs"), m as f64, macs_m * 1e6, 0.01);
    }
    // Below width 1 the V2 last conv keeps 1280 channels; above it scales.
    let v2 = |w: f64| {
        MobileNetConfig::v2(10)
            .with_width_mult(w)
            .spec()
            .unwrap()
            .last_conv
            .unwrap()
            .channels
    };
    assert_eq!((v2(0.5), v2(1.4)), (1280, 1792));
}

#[test]
fn report_sums_its_layers_and_excludes_running_stats() {
    let model = MobileNetConfig::v3_small(10).init::<NdArray>(&Default::default());
    let report = mobilenet_cost(&model, [224, 224]);
    assert_eq!(
        report.params,
        report.layers.iter().map(|l| l.params).sum::<usize>()
    );
    assert_eq!(
        report.macs,
        report.layers.iter().map(|l| l.macs).sum::<u64>()
    );
    // Burn's count includes 2 running statistics per BatchNorm channel.
    let bn_channels: usize = report
        .layers
        .iter()
        .filter(|l| !l.name.starts_with("classifier") && !l.name.ends_with("squeeze_excite"))
        .map(|l| l.output[0])
        .sum();
    assert_eq!(model.num_params(), report.params + 2 * bn_channels);
    // MACs scale with the input area (classifier aside).
    let small = mobilenet_cost(&model, [112, 112]);
    assert!(small.macs * 3 < report.macs && small.macs * 5 > report.macs);
}

#[test]
fn separable_comparison_follows_the_closed_form() {
    let c = compare_separable(3, 9, 3, [5, 5]).unwrap();
    assert_eq!((c.standard_params, c.separable_params), (243, 54));
    assert_eq!((c.standard_macs, c.separable_macs), (243 * 25, 54 * 25));
    assert!((c.ratio - (1.0 / 9.0 + 1.0 / 9.0)).abs() < 1e-12);
    for (m, n, k) in [(32, 64, 3), (512, 512, 3), (16, 24, 5), (8, 8, 7)] {
        let c = compare_separable(m, n, k, [14, 14]).unwrap();
        assert!((c.ratio - c.predicted_ratio).abs() < 1e-12, "{m} {n} {k}");
    }
    let err = compare_separable(0, 9, 3, [5, 5]).unwrap_err().to_string();
    assert!(err.contains("in_channels"), "{err}");
}
