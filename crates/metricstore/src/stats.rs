//! CloudWatch statistics over a [`Bucket`]: SampleCount, Average, Sum, Minimum, Maximum and the
//! extended statistics (pNN, and later tmNN, wmNN, tcNN, tsNN, IQM).

use crate::Bucket;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
    /// `pNN.NN`: the percentile, 0..=100.
    Percentile(f64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid statistic '{0}'")]
pub struct StatisticParseError(pub String);

impl Statistic {
    /// Parse a CloudWatch statistic name (`Average`, `p99`, `p99.9`).
    pub fn parse(name: &str) -> Result<Statistic, StatisticParseError> {
        Ok(match name {
            "SampleCount" => Statistic::SampleCount,
            "Average" => Statistic::Average,
            "Sum" => Statistic::Sum,
            "Minimum" => Statistic::Minimum,
            "Maximum" => Statistic::Maximum,
            other => match other.strip_prefix('p').map(str::parse::<f64>) {
                Some(Ok(p)) if (0.0..=100.0).contains(&p) => Statistic::Percentile(p),
                _ => return Err(StatisticParseError(other.to_string())),
            },
        })
    }

    /// The statistic's value over one bucket; `None` when it cannot be computed (a percentile
    /// over statistic sets).
    pub fn compute(&self, bucket: &Bucket) -> Option<f64> {
        match self {
            Statistic::SampleCount => Some(bucket.count),
            Statistic::Average => (bucket.count > 0.0).then(|| bucket.sum / bucket.count),
            Statistic::Sum => Some(bucket.sum),
            Statistic::Minimum => Some(bucket.min),
            Statistic::Maximum => Some(bucket.max),
            Statistic::Percentile(p) => {
                let values = bucket.values.as_ref()?;
                let total: f64 = values.iter().map(|(_, w)| w).sum();
                if total <= 0.0 {
                    return None;
                }
                let rank = p / 100.0 * total;
                let mut seen = 0.0;
                for (value, weight) in values {
                    seen += weight;
                    if seen >= rank {
                        return Some(*value);
                    }
                }
                values.last().map(|(v, _)| *v)
            }
        }
    }
}
