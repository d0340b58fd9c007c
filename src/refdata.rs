//! Reference data files (IBGE states and municipalities, municipal seat coordinates): parsing.
//!
//! The files come from a directory given at run time (`appcataloga refdata load DIR`); they are
//! never embedded in the binary or the repository. Parsing is pure and strict: every row is
//! checked (code shape, state code, coordinate range) and a bad row is reported with its file
//! and line number rather than loaded half-right. The SQL that stores the rows is in
//! `store::refdata`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File with `ID_COUNTY,FK_STATE,NA_COUNTY` (IBGE 2020).
pub const MUNICIPALITIES_FILE: &str = "IBGE-BR_Municipios_2020_BULKLOAD.csv";
/// File with `ID_STATE,NA_STATE,LC_STATE`.
pub const STATES_FILE: &str = "IBGE-BR_UF_2020_BULKLOAD.csv";
/// File with `codigo_ibge,nome,latitude,longitude,...` (municipal seats).
pub const SEATS_FILE: &str = "municipios-coordenadas.csv";

/// A problem with a reference file.
#[derive(Debug, thiserror::Error)]
pub enum RefDataError {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// File path.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {reason}")]
    BadRow {
        /// File path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A federative unit.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// IBGE 2-digit code.
    pub id: i32,
    /// Name.
    pub name: String,
    /// Two-letter code.
    pub code: String,
}

/// A municipality with its seat position when known.
#[derive(Debug, Clone, PartialEq)]
pub struct County {
    /// IBGE 7-digit code.
    pub id: i32,
    /// State code.
    pub state: i32,
    /// Name.
    pub name: String,
    /// Seat latitude (degrees).
    pub latitude: Option<f64>,
    /// Seat longitude (degrees).
    pub longitude: Option<f64>,
}

/// Everything `refdata load` stores.
#[derive(Debug, Clone, Default)]
pub struct ReferenceData {
    /// The 27 states.
    pub states: Vec<State>,
    /// The municipalities.
    pub counties: Vec<County>,
}

fn read(path: &Path) -> Result<String, RefDataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RefDataError::Unreadable { path: path.into(), reason: e.to_string() })?;
    Ok(text.trim_start_matches('\u{feff}').to_string())
}

/// Data rows of a headed CSV without quoting: `(line number, fields)`.
fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<String>)> + '_ {
    text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| {
        let fields = l
            .split(',')
            .map(|f| f.trim_matches(|c: char| c == '|' || c.is_whitespace()).to_string())
            .collect();
        (i + 1, fields)
    })
}

/// Reads and cross-checks the three files in `dir`.
///
/// # Errors
/// [`RefDataError`] naming the file and line of the first problem.
pub fn load_dir(dir: &Path) -> Result<ReferenceData, RefDataError> {
    let bad =
        |path: &Path, line: usize, reason: String| RefDataError::BadRow { path: path.into(), line, reason };
    let states_path = dir.join(STATES_FILE);
    let mut states = Vec::new();
    for (line, f) in rows(&read(&states_path)?) {
        let [id, name, code] = f.as_slice() else {
            return Err(bad(&states_path, line, format!("expected 3 fields, found {}", f.len())));
        };
        let id: i32 = id
            .parse()
            .ok()
            .filter(|v| (11..=53).contains(v))
            .ok_or_else(|| bad(&states_path, line, format!("bad state code {id:?}")))?;
        if code.len() != 2 {
            return Err(bad(&states_path, line, format!("bad state abbreviation {code:?}")));
        }
        states.push(State { id, name: name.clone(), code: code.clone() });
    }
    let seats_path = dir.join(SEATS_FILE);
    let mut seats: BTreeMap<i32, (f64, f64)> = BTreeMap::new();
    for (line, f) in rows(&read(&seats_path)?) {
        if f.len() < 4 {
            return Err(bad(&seats_path, line, format!("expected at least 4 fields, found {}", f.len())));
        }
        let id: i32 =
            f[0].parse().map_err(|_| bad(&seats_path, line, format!("bad IBGE code {:?}", f[0])))?;
        let lat: f64 =
            f[2].parse().map_err(|_| bad(&seats_path, line, format!("bad latitude {:?}", f[2])))?;
        let lon: f64 =
            f[3].parse().map_err(|_| bad(&seats_path, line, format!("bad longitude {:?}", f[3])))?;
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(bad(&seats_path, line, format!("coordinates out of range: {lat}, {lon}")));
        }
        seats.insert(id, (lat, lon));
    }
    let counties_path = dir.join(MUNICIPALITIES_FILE);
    let mut counties = Vec::new();
    for (line, f) in rows(&read(&counties_path)?) {
        let [id, state, name] = f.as_slice() else {
            return Err(bad(&counties_path, line, format!("expected 3 fields, found {}", f.len())));
        };
        let id: i32 = id
            .parse()
            .ok()
            .filter(|v| (1_000_000..=9_999_999).contains(v))
            .ok_or_else(|| bad(&counties_path, line, format!("bad IBGE municipality code {id:?}")))?;
        let state: i32 = state
            .parse()
            .ok()
            .filter(|s| states.iter().any(|st| st.id == *s))
            .ok_or_else(|| bad(&counties_path, line, format!("unknown state code {state:?}")))?;
        if id / 100_000 != state {
            return Err(bad(&counties_path, line, format!("code {id} does not belong to state {state}")));
        }
        let seat = seats.get(&id);
        counties.push(County {
            id,
            state,
            name: name.clone(),
            latitude: seat.map(|s| s.0),
            longitude: seat.map(|s| s.1),
        });
    }
    Ok(ReferenceData { states, counties })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATES_FILE), "ID_STATE,NA_STATE,LC_STATE\n53,Distrito Federal,DF\n")
            .unwrap();
        std::fs::write(
            dir.path().join(SEATS_FILE),
            "\u{feff}codigo_ibge,nome,latitude,longitude,capital\n5300108,Brasília,-15.7795,-47.9297,1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(MUNICIPALITIES_FILE),
            "ID_COUNTY,FK_STATE,NA_COUNTY\n5300108,53,Brasília|\r\n",
        )
        .unwrap();
        let data = load_dir(dir.path()).unwrap();
        assert_eq!(data.counties.len(), 1);
        assert_eq!(data.counties[0].name, "Brasília");
        assert_eq!(data.counties[0].latitude, Some(-15.7795));
        std::fs::write(
            dir.path().join(MUNICIPALITIES_FILE),
            "ID_COUNTY,FK_STATE,NA_COUNTY\n5300108,35,Brasília\n",
        )
        .unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
    }
}
