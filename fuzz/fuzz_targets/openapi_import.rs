//! OpenAPI/Swagger import: any document gives an `[[apis]]` block or an error; a block that
//! is produced renders as TOML. Documents naming URLs still import (nothing is fetched).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = edgegate::openapi::parse_document(data) else { return };
    let opts = edgegate::openapi::Options { name: None, stages: vec![], into_config: false };
    if let Ok(im) = edgegate::openapi::import(&doc, &opts) {
        let _ = edgegate::openapi::to_toml(&im);
    }
});
