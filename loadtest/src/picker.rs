//! Chooses each request's hostname (uniformly or Zipf over the hosts) and its
//! entry in the weighted request mix. Every worker has its own seeded picker,
//! so a run's choices need no lock and repeat with the same seed.

use crate::scenario::{HostDistribution, Plan};
use rand::SeedableRng as _;
use rand::distr::Distribution as _;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::SmallRng;
use rand_distr::Zipf;

pub struct Picker {
    rng: SmallRng,
    hosts: HostChoice,
    mix: Option<WeightedIndex<u32>>,
}

enum HostChoice {
    One,
    Uniform(rand::distr::Uniform<usize>),
    Zipf(Zipf<f64>),
}

impl Picker {
    pub fn new(plan: &Plan, worker: usize) -> anyhow::Result<Picker> {
        let n = plan.hosts.len();
        let hosts = match plan.distribution {
            _ if n == 1 => HostChoice::One,
            HostDistribution::Uniform => HostChoice::Uniform(rand::distr::Uniform::new(0, n)?),
            HostDistribution::Zipf { exponent } => HostChoice::Zipf(Zipf::new(n as f64, exponent)?),
        };
        let mix = (plan.mix.len() > 1)
            .then(|| WeightedIndex::new(plan.mix.iter().map(|r| r.weight)))
            .transpose()?;
        Ok(Picker {
            rng: SmallRng::seed_from_u64(plan.seed.wrapping_add(worker as u64)),
            hosts,
            mix,
        })
    }

    /// The index of the next request's host; with Zipf, host 0 is the most popular.
    pub fn host(&mut self) -> usize {
        match &self.hosts {
            HostChoice::One => 0,
            HostChoice::Uniform(u) => u.sample(&mut self.rng),
            // Zipf samples 1..=n as a float.
            HostChoice::Zipf(z) => z.sample(&mut self.rng) as usize - 1,
        }
    }

    /// The index of the next request in the mix.
    pub fn request(&mut self) -> usize {
        self.mix.as_ref().map_or(0, |w| w.sample(&mut self.rng))
    }
}
