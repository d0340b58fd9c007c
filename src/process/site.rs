//! Site geometry, pure: nearest municipal seat, distance, running-mean refinement.
//!
//! Offline by design: stations sit behind a VPN and a public geocoder may be unreachable, so the
//! state and county of a new site come from the nearest municipal seat in the reference data
//! (`refdata load`). An optional geocoder only adds a district name.

/// A municipal seat.
#[derive(Debug, Clone, PartialEq)]
pub struct Seat {
    /// IBGE municipality code.
    pub county: i32,
    /// IBGE state code.
    pub state: i32,
    /// Latitude, degrees.
    pub latitude: f64,
    /// Longitude, degrees.
    pub longitude: f64,
}

/// Great-circle distance in metres (haversine, mean Earth radius).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

/// The seat nearest to a position, if any seat is known.
pub fn nearest_seat(seats: &[Seat], latitude: f64, longitude: f64) -> Option<&Seat> {
    seats.iter().min_by(|a, b| {
        let da = distance_m(latitude, longitude, a.latitude, a.longitude);
        let db = distance_m(latitude, longitude, b.latitude, b.longitude);
        da.total_cmp(&db)
    })
}

/// `true` when two positions are within `tolerance` degrees on both axes (the original rule).
pub fn within(tolerance: f64, lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> bool {
    (lat1 - lat2).abs() < tolerance && (lon1 - lon2).abs() < tolerance
}

/// Running mean of a stored point over `n` samples with `m` new samples whose sum is given.
pub fn refine(stored: f64, n: u64, new_sum: f64, m: u64) -> f64 {
    if n + m == 0 {
        return stored;
    }
    (stored * n as f64 + new_sum) / (n + m) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_and_distance() {
        let seats = vec![
            Seat { county: 5300108, state: 53, latitude: -15.7795, longitude: -47.9297 },
            Seat { county: 2927408, state: 29, latitude: -12.9718, longitude: -38.5011 },
        ];
        let s = nearest_seat(&seats, -12.971587, -38.481502).unwrap();
        assert_eq!(s.county, 2927408);
        assert!((distance_m(0.0, 0.0, 0.0, 1.0) - 111_195.0).abs() < 100.0);
        assert!(within(0.0005, -15.0, -47.0, -15.0004, -47.0004));
        assert!(!within(0.0005, -15.0, -47.0, -15.0006, -47.0));
        assert_eq!(refine(10.0, 1, 20.0, 1), 15.0);
    }
}
