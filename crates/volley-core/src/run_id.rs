//! Run and batch ids: short, sortable, typeable.
use jiff::Timestamp;

/// A new run id: `YYYYMMDD-HHMMSS-xxxx` (UTC time plus four random hex digits). Sorting ids sorts
/// runs by start time, and a prefix is enough to name one on the command line.
pub fn new_run_id(now: Timestamp) -> String {
    let dt = now.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{:04x}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        fastrand::u16(..)
    )
}

/// The id of the `n`-th batch of a run.
pub fn batch_id(run_id: &str, n: u64) -> String {
    format!("{run_id}-b{n:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id("2026-11-23T14:15:00Z".parse().unwrap());
        let b = new_run_id("2026-11-23T14:15:01Z".parse().unwrap());
        assert!(a.starts_with("20261123-141500-"));
        assert!(a < b);
        assert_eq!(batch_id("r", 7), "r-b0007");
    }
}
