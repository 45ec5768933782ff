//! Wall-clock time as unix milliseconds: the one conversion every layer uses for timestamps
//! (entries' creation, last use, backoff deadlines, the events log). A utility: it imports
//! nothing from the crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch; 0 for a time before it.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_milliseconds_from_the_epoch() {
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
