fn main() {
    for path in axon::module::compiled_modules().paths() {
        println!("{path}");
    }
}
