//! tmd-flowhead
