//! With the `tch` feature, embeds the directory of the libtorch this binary was linked against
//! as its run path, so that it starts with no `LD_LIBRARY_PATH` (`scripts/gpu/build.sh`).
//! torch-sys finds libtorch (a pip PyTorch with `LIBTORCH_USE_PYTORCH=1`, or `LIBTORCH`) and
//! passes its `lib/` directory to direct dependents as `DEP_TCH_LIBTORCH_LIB`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        if cfg!(unix) && !lib.is_empty() {
            println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{lib}");
        }
    }
}
