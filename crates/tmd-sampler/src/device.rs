//! Choosing where to run: a check that a CUDA GPU is usable before burn's CUDA backend is touched
//! (the backend panics on first use when there is none).

/// Why no CUDA device can be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// This build has no CUDA support.
    #[error("this build has no CUDA support; rebuild with `--features cuda` (e.g. `cargo build --release -p tmd-cli --features cuda`), or run on the CPU")]
    NotBuilt,
    /// The driver could not be loaded or initialised.
    #[error("no usable CUDA driver: {0} (is an NVIDIA GPU with its driver present? run on the CPU instead)")]
    NoDriver(String),
    /// The driver reports no device, or fewer than asked for.
    #[error("CUDA device {index} requested but the driver reports {count} device(s)")]
    NoDevice {
        /// The device index asked for.
        index: usize,
        /// Devices present.
        count: usize,
    },
}

/// Checks that CUDA device `index` exists, without touching burn's backend.
///
/// # Returns
/// The number of CUDA devices.
pub fn check_cuda(index: usize) -> Result<usize, DeviceError> {
    #[cfg(feature = "cuda")]
    {
        // SAFETY: only probes whether libcuda can be loaded; nothing from it is called if not.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(DeviceError::NoDriver(
                "libcuda.so could not be loaded (no NVIDIA driver on this machine, or it is not on \
                 the library path)"
                    .into(),
            ));
        }
        let count = cudarc::driver::result::init()
            .and_then(|_| cudarc::driver::result::device::get_count())
            .map_err(|e| DeviceError::NoDriver(format!("{e:?}")))? as usize;
        if index >= count {
            return Err(DeviceError::NoDevice { index, count });
        }
        Ok(count)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = index;
        Err(DeviceError::NotBuilt)
    }
}
