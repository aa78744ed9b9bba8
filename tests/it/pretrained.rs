//! Published weights by name: the download, hash check and cache against a loopback HTTP
//! server this test starts (no other network), serving a checkpoint it wrote.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread::JoinHandle;

use burn::backend::NdArray;
use dwconv::models::{Architecture, MobileNetConfig};
use dwconv::pretrained::{Weights, download};
use sha2::{Digest, Sha256};

use crate::common::{run_to_success, scratch_dir, values};

/// Serves `body` to `requests` GET requests on 127.0.0.1, announcing `announced` bytes and
/// sending `sent` of them before closing; returns the URL of `name` and the server thread.
fn serve(
    body: Vec<u8>,
    announced: usize,
    sent: usize,
    requests: usize,
    name: &str,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}/models/{name}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        for _ in 0..requests {
            let (mut stream, _) = listener.accept().expect("a connection");
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..sent]);
        }
    });
    (url, server)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Files in `dir`, temporary ones included.
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(read) => read
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn download_checks_the_hash_and_caches_the_weights() {
    let device = Default::default();
    let dir = scratch_dir("pretrained");
    let config = MobileNetConfig::new(Architecture::V1, 10).with_width_mult(0.25);
    let model = config.init::<NdArray>(&device);
    let checkpoint = dir.join("made.safetensors");
    model.save_torchvision(&checkpoint, &config).unwrap();
    let bytes = std::fs::read(&checkpoint).unwrap();
    let hash = sha256_hex(&bytes);
    let name = "v1_025-0123abcd.safetensors";
    let cache = dir.join("cache");

    // A wrong hash: an error naming both, nothing in the cache.
    let (url, server) = serve(bytes.clone(), bytes.len(), bytes.len(), 1, name);
    let err = download(&url, "0123abcd", name, &cache, false)
        .unwrap_err()
        .to_string();
    server.join().unwrap();
    assert!(err.contains(&hash) && err.contains("0123abcd"), "{err}");
    assert_eq!(entries(&cache), Vec::<String>::new());

    // Cut off half-way: an error saying so, nothing in the cache.
    let (url, server) = serve(bytes.clone(), bytes.len(), bytes.len() / 2, 1, name);
    let err = download(&url, &hash[..8], name, &cache, false)
        .unwrap_err()
        .to_string();
    server.join().unwrap();
    assert!(err.contains("cut off"), "{err}");
    assert_eq!(entries(&cache), Vec::<String>::new());

    // The right hash (a prefix, as torchvision publishes it, and the whole digest): the
    // file lands whole and loads into the model it came from.
    let (url, server) = serve(bytes.clone(), bytes.len(), bytes.len(), 1, name);
    let path = download(&url, &hash[..10], name, &cache, false).unwrap();
    server.join().unwrap();
    assert_eq!(entries(&cache), vec![name.to_string()]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let loaded = config
        .init_from_torchvision::<NdArray>(&path, &device)
        .unwrap();
    let images = burn::tensor::Tensor::<NdArray, 4>::ones([1, 3, 32, 32], &device);
    assert_eq!(
        values(loaded.forward(images.clone())),
        values(model.forward(images))
    );

    // The second call reads the cache: the server is gone, and the URL refuses.
    let again = download(&url, &hash, name, &cache, false).unwrap();
    assert_eq!(again, path);

    // A bad prefix is refused before any transfer.
    let err = download(&url, "xyz", name, &dir.join("other"), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'xyz'") && err.contains("hex"), "{err}");
}

/// Every published checkpoint names its network and torchvision's hash prefix (the part
/// of the file name after its last `-`), and its name parses back.
#[test]
fn published_weights_are_consistent() {
    for &weights in Weights::ALL {
        let info = weights.info();
        let stem = info.file_name().trim_end_matches(".pth");
        let published = stem.rsplit('-').next().unwrap();
        assert_eq!(published, info.sha256_prefix, "{weights}");
        assert_eq!(info.name.parse::<Weights>().unwrap(), weights);
        assert!(info.crop_size <= info.resize_size, "{weights}");
        let spec = info.config().spec().unwrap();
        assert_eq!(spec.architecture, info.architecture, "{weights}");
    }
    let err = "v9".parse::<Weights>().unwrap_err().to_string();
    assert!(
        err.contains("'v9'") && err.contains("v2-imagenet1k-v1"),
        "{err}"
    );
    let names = dwconv::pretrained::imagenet_class_names();
    assert_eq!(names.len(), 1000);
    assert_eq!((names[0], names[999]), ("tench", "toilet tissue"));
}

/// `infer --pretrained NAME` loads the named network from the cache and prints ImageNet's
/// class names; an unknown name lists the published ones. (The cached file is a model this
/// test builds, under the name the download would give it.)
#[test]
fn infer_classifies_with_pretrained_weights_from_the_cache() {
    use crate::examples::example;
    let device = Default::default();
    let dir = scratch_dir("pretrained-infer");
    let info = Weights::MobileNetV3SmallV1.info();
    let config = info.config();
    let model = config.init::<NdArray>(&device);
    model
        .save_torchvision(&dir.join(info.file_name()), &config)
        .unwrap();
    let image = dir.join("image.png");
    image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])
    })
    .save(&image)
    .unwrap();
    let stdout = run_to_success(
        "infer --pretrained",
        example("infer")
            .env(dwconv::pretrained::CACHE_DIR_VARIABLE, dir.as_os_str())
            .args(["--pretrained", info.name, "--top-k", "3"])
            .arg(&image),
    );
    // `<image>: <class> <probability>, ...`, top 3.
    let names = dwconv::pretrained::imagenet_class_names();
    let line = stdout
        .lines()
        .find(|line| line.starts_with(image.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no line for the image in: {stdout}"));
    let shown: Vec<&str> = line
        .rsplit_once(": ")
        .unwrap()
        .1
        .split(", ")
        .map(|item| item.rsplit_once(' ').unwrap().0)
        .collect();
    assert_eq!(shown.len(), 3, "{line}");
    assert!(shown.iter().all(|name| names.contains(name)), "{line}");
    let out = example("infer")
        .args(["--pretrained", "v2-imagenet9k"])
        .arg(&image)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("'v2-imagenet9k'") && stderr.contains(info.name),
        "{stderr}"
    );
}
