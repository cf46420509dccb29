fn main() {
    eprintln!("usage: cargo xtask <command> (none yet)");
    std::process::exit(2)
}
