//! The monorepo's image graph: images of `docker/` that are no crate, and apps built `FROM` them
//! by name. Detection follows the FROM edges; a release builds and pushes in graph order.

use crate::support::harness::{skopeo, skopeo_raw, stderr, Registry, Scratch};

/// The access log's request line as `METHOD path`, without the protocol.
fn request_path(request: &str) -> &str {
    request.split(" HTTP/").next().unwrap_or(request)
}

#[test]
fn a_change_to_the_base_image_selects_it_and_what_is_built_on_it_and_the_base_goes_first() {
    let scratch = Scratch::new();
    let registry = Registry::start();
    let repository = format!("{}/acme/prod", registry.host);
    scratch.xtask_ok(&["release", "--all", "--repository", &repository]);
    let before_change = scratch.head();

    scratch.edit("docker/base/rootfs/etc/passwd", |old| format!("{old}batch:x:65533:65533:batch:/:/sbin/nologin\n"));
    let sha = scratch.commit("another user in the runtime base");
    let changed: serde_json::Value = serde_json::from_str(&scratch.xtask_ok(&["changed", "--base", &before_change, "--json"])).unwrap();
    let selected: Vec<(&str, &str)> = changed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| (app["name"].as_str().unwrap(), app["reasons"][0]["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(selected, [("base", "file"), ("hello-api", "base-image")], "{changed:#}");
    let explained = scratch.xtask_ok(&["changed", "--base", &before_change, "--explain", "hello-api"]);
    assert_eq!(
        explained.trim(),
        "hello-api: built from crates/hello-api/Dockerfile, beside the crate's Cargo.toml\ndocker/base/rootfs/etc/passwd → base → hello-api"
    );

    let before = registry.requests().len();
    let output = scratch.xtask(&["release", "--repository", &repository, "--base", &before_change, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let released: Vec<&str> = summary["apps"].as_array().unwrap().iter().map(|app| app["name"].as_str().unwrap()).collect();
    assert_eq!(released, ["base", "hello-api"], "the base first, worker untouched: {summary:#}");

    let requests: Vec<String> = registry.requests()[before..].iter().map(|r| request_path(r).to_string()).collect();
    let position = |needle: &str| {
        requests
            .iter()
            .position(|r| r.starts_with("PUT") && r.ends_with(needle))
            .unwrap_or_else(|| panic!("no PUT of {needle}: {requests:#?}"))
    };
    assert!(position("/manifests/base-latest") < position(&format!("/manifests/hello-api-{sha}")), "{requests:#?}");

    // The app's image holds the base's layer unchanged, and its push uploaded only its own blobs.
    let base_index = skopeo_raw(&format!("docker://{repository}:base-{sha}"));
    let app_index = skopeo_raw(&format!("docker://{repository}:hello-api-{sha}"));
    for (base_entry, app_entry) in base_index["manifests"].as_array().unwrap().iter().zip(app_index["manifests"].as_array().unwrap()) {
        assert_eq!(base_entry["platform"], app_entry["platform"]);
        let base = skopeo_raw(&format!("docker://{repository}@{}", base_entry["digest"].as_str().unwrap()));
        let app = skopeo_raw(&format!("docker://{repository}@{}", app_entry["digest"].as_str().unwrap()));
        let base_layer = base["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(app["layers"][0]["digest"], base_layer, "the app starts with the base's layer");
        let base_uploads = requests
            .iter()
            .filter(|r| r.starts_with("PUT") && r.contains("/blobs/uploads/") && r.contains(&format!("digest={base_layer}")));
        assert_eq!(base_uploads.count(), 1, "the base's layer is uploaded once, by the base's push: {requests:#?}");
        let reference = format!("docker://{repository}@{}", app_entry["digest"].as_str().unwrap());
        let config: serde_json::Value =
            serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", "--config", &reference]).stdout).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532", "the app runs as the base's user");
    }
}

#[test]
fn a_cycle_of_images_is_an_error_naming_the_line() {
    let scratch = Scratch::new();
    scratch.write("docker/tools/Dockerfile", "FROM base\n");
    scratch.edit("docker/base/Dockerfile", |old| old.replace("FROM scratch", "FROM tools"));
    scratch.commit("a cycle");
    let output = scratch.xtask(&["changed", "--all"]);
    assert_eq!(output.status.code(), Some(2));
    let line = std::fs::read_to_string(scratch.path().join("docker/base/Dockerfile"))
        .unwrap()
        .lines()
        .position(|line| line.starts_with("FROM"))
        .unwrap()
        + 1;
    assert_eq!(
        stderr(&output).trim(),
        format!("error: docker/base/Dockerfile:{line}: FROM tools makes a cycle of images (base → tools → base): an image cannot be built on itself; start one of them FROM another base")
    );
}
