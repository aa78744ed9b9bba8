//! The kernel traits for `Autodiff<B>`: one backward node per op call, which calls the
//! inner backend's backward ops (so a fast inner backend is fast in training too). Adding
//! an op means adding its node here.

mod depthwise;
mod norm_act;
mod pointwise;
