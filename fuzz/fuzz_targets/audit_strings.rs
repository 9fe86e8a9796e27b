//! The audit's secret scanner on untrusted firmware bytes: the `strings` extractor (runs are
//! maximal, printable, at least `min` long, and map back to their file offsets), the rule
//! matcher on the extracted strings and on the raw bytes, and the shadow / sdkconfig parsers.
#![no_main]

use std::sync::OnceLock;

use iotsec_audit::secrets::rules::Matcher;
use iotsec_audit::secrets::{shadow, strings};
use libfuzzer_sys::fuzz_target;

static MATCHER: OnceLock<Matcher> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let min = data.first().map_or(4, |b| usize::from(*b % 16));
    let mut last_end = 0;
    for (off, run) in strings::strings(data, min) {
        assert!(off >= last_end);
        assert!(run.len() >= min.max(1));
        assert!(run.iter().all(|&b| strings::printable(b)));
        assert!(off == 0 || !strings::printable(data[off - 1]));
        assert!(off + run.len() == data.len() || !strings::printable(data[off + run.len()]));
        last_end = off + run.len();
    }
    let mut joined = Vec::new();
    let mut index = Vec::new();
    strings::extract_joined(data, min, &mut joined, &mut index);
    for &(pos, off) in &index {
        assert_eq!(strings::file_offset(&index, pos), Some(off));
    }
    let matcher = MATCHER.get_or_init(Matcher::new);
    matcher.scan(&joined, true, |start, line, _| {
        assert!(start + line.len() <= joined.len())
    });
    matcher.scan(data, false, |start, line, _| {
        assert!(start + line.len() <= data.len())
    });
    let text = String::from_utf8_lossy(data);
    let _ = shadow::weak_entries(&text);
    let _ = iotsec_audit::check::sdkconfig::parse(&text);
});
