//! The compile errors module authors see, checked against `tests/ui/{module,callback}/{pass,fail}`.
//! Compiler wording drifts between rustc releases, so the `.stderr` files are
//! compared only on the rustc that blessed them (`TRYBUILD=overwrite` to
//! bless, then review the diff).

#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr files were blessed with rustc 1.95"
)]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("*/pass/*.rs");
    t.compile_fail("*/fail/*.rs");
}
