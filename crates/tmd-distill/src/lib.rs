//! tmd-distill
