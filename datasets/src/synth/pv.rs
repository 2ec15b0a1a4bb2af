//! PV systems of the synthetic fleet: array orientation, DC power with temperature derating,
//! inverter losses and clipping.

use rand::Rng;

use crate::solar::ArrayOrientation;

/// Cell temperature rise per W/m² above ambient under NOCT test conditions (800 W/m², 20 °C).
const NOCT_IRRADIANCE_W_M2: f64 = 800.0;
const NOCT_AMBIENT_C: f64 = 20.0;
/// Standard test conditions: power ratings hold at 1000 W/m² and 25 °C cell temperature.
const STC_IRRADIANCE_W_M2: f64 = 1000.0;
const STC_CELL_C: f64 = 25.0;
/// Inverter standby draw as a share of its rating; below it the inverter stays off.
const INVERTER_TARE: f64 = 0.004;

fn round_tenth(degrees: f64) -> f64 {
    (degrees * 10.0).round() / 10.0
}

/// Who operates a PV system, which sets its size and design habits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PvOwner {
    /// Rooftop on a home: varied orientations, small inverters.
    Household,
    /// Flat or low-pitch commercial roof.
    Business,
    /// Ground-mounted plant: south-facing, optimal tilt, oversized DC.
    Plant,
}

/// One PV system. Only capacity, tilt and azimuth are published in site metadata; the rest
/// is what makes two equally rated systems produce differently.
#[derive(Clone, Debug)]
pub(crate) struct PvSystem {
    /// DC nameplate, kW.
    pub capacity_kw: f64,
    pub orientation: ArrayOrientation,
    /// DC/AC ratio: inverter rating is `capacity_kw / dc_ac_ratio`.
    pub dc_ac_ratio: f64,
    /// Soiling, wiring, mismatch and degradation, as a factor on DC power.
    pub dc_derate: f64,
    /// Power temperature coefficient, 1/K (negative).
    pub temperature_coefficient: f64,
    /// Nominal operating cell temperature, °C.
    pub noct_c: f64,
    pub inverter_efficiency: f64,
    /// Ground reflectance around the array.
    pub albedo: f64,
}

impl PvSystem {
    /// A random system of `owner`, sized `capacity_kw`, at latitude `latitude_deg`.
    pub fn sample(owner: PvOwner, capacity_kw: f64, latitude_deg: f64, rng: &mut impl Rng) -> Self {
        // Near-optimal fixed tilt grows with latitude.
        let optimal_tilt = 0.76 * latitude_deg.abs() + 3.1;
        let (tilt_deg, azimuth_deg, dc_ac_ratio) = match owner {
            PvOwner::Household => {
                // A quarter of homes have east/west roofs; the rest face roughly south.
                let azimuth = if rng.random_bool(0.25) {
                    if rng.random_bool(0.5) { 90.0 } else { 270.0 }
                } else {
                    180.0 + rng.random_range(-45.0..45.0)
                };
                (
                    rng.random_range(15.0..45.0),
                    azimuth,
                    rng.random_range(1.0..1.3),
                )
            }
            PvOwner::Business => (
                rng.random_range(5.0..20.0),
                180.0 + rng.random_range(-30.0..30.0),
                rng.random_range(1.05..1.25),
            ),
            PvOwner::Plant => (
                optimal_tilt + rng.random_range(-5.0..5.0),
                180.0 + rng.random_range(-8.0..8.0),
                rng.random_range(1.15..1.35),
            ),
        };
        Self {
            capacity_kw,
            // Published to one decimal in site metadata; the system uses exactly what is published.
            orientation: ArrayOrientation {
                tilt_deg: round_tenth(tilt_deg),
                azimuth_deg: round_tenth(azimuth_deg),
            },
            dc_ac_ratio,
            dc_derate: rng.random_range(0.86..0.95),
            temperature_coefficient: -rng.random_range(0.0035..0.0045),
            noct_c: rng.random_range(42.0..48.0),
            inverter_efficiency: rng.random_range(0.955..0.975),
            albedo: rng.random_range(0.15..0.25),
        }
    }

    pub fn inverter_rating_kw(&self) -> f64 {
        self.capacity_kw / self.dc_ac_ratio
    }

    /// AC output in kW for plane-of-array irradiance `poa_w_m2` at ambient `ambient_c`:
    /// NOCT cell temperature, linear temperature derating around 25 °C, DC losses, inverter
    /// efficiency and tare, clipping at the inverter rating. Exactly 0 in the dark.
    pub fn ac_power_kw(&self, poa_w_m2: f64, ambient_c: f64) -> f64 {
        if poa_w_m2 <= 0.0 {
            return 0.0;
        }
        let cell_c = ambient_c + (self.noct_c - NOCT_AMBIENT_C) / NOCT_IRRADIANCE_W_M2 * poa_w_m2;
        let thermal = (1.0 + self.temperature_coefficient * (cell_c - STC_CELL_C)).max(0.0);
        let dc_kw = self.capacity_kw * poa_w_m2 / STC_IRRADIANCE_W_M2 * thermal * self.dc_derate;
        let rating = self.inverter_rating_kw();
        (dc_kw * self.inverter_efficiency - INVERTER_TARE * rating).clamp(0.0, rating)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn system() -> PvSystem {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        PvSystem::sample(PvOwner::Plant, 1000.0, 52.0, &mut rng)
    }

    #[test]
    fn power_is_zero_in_the_dark_and_clipped_at_the_inverter() {
        let pv = system();
        assert_eq!(pv.ac_power_kw(0.0, 10.0), 0.0);
        assert_eq!(pv.ac_power_kw(2.0, 10.0), 0.0, "below inverter tare");
        assert_eq!(pv.ac_power_kw(1400.0, -10.0), pv.inverter_rating_kw());
        assert!(pv.inverter_rating_kw() < pv.capacity_kw);
    }

    #[test]
    fn heat_costs_power() {
        let pv = system();
        let cool = pv.ac_power_kw(500.0, 0.0);
        let hot = pv.ac_power_kw(500.0, 35.0);
        // 35 K hotter at ~0.4 %/K is about 14 % less.
        let loss = 1.0 - hot / cool;
        assert!((0.10..0.18).contains(&loss), "{loss}");
    }
}
