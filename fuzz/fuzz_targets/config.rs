//! wg-quick parser: never panics on any text, and every accepted file round-trips through
//! the writer (`parse(write(parse(t))) == parse(t)`).
#![no_main]

use std::path::Path;

use edgewire_tunnel::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.conf");
    let Ok(parsed) = config::parse(text, file) else {
        return;
    };
    let written = parsed.to_conf_string();
    match config::parse(&written, file) {
        Ok(again) => assert_eq!(parsed, again, "round trip changed the config:\n{written}"),
        Err(e) => panic!("written config does not parse: {e}\n{written}"),
    }
});
