//! stub
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "chef",
        pub_export_macro: true,
        default_bindings_module: "chef_sdk::bindings",
    });
}
