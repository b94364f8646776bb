//! The sampling choices (a leaf: requests, manifests and the sampler all read them).

/// How the next token is drawn. `None` leaves a choice to the layer below: a request's options
/// over its model's manifest, the manifest over the model folder's files, those over the
/// sampler's defaults (greedy, seed 0). A new sampling option is a field here, read by the
/// sampler and by each transport's option parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_k: Option<u32>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub seed: Option<u64>,
}

impl Sampling {
    /// Each choice made here, else `base`'s.
    pub fn or(self, base: Sampling) -> Sampling {
        Sampling {
            temperature: self.temperature.or(base.temperature),
            top_k: self.top_k.or(base.top_k),
            top_p: self.top_p.or(base.top_p),
            min_p: self.min_p.or(base.min_p),
            repetition_penalty: self.repetition_penalty.or(base.repetition_penalty),
            seed: self.seed.or(base.seed),
        }
    }
}
