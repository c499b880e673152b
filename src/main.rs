fn main() {
    std::process::exit(mailcanary::cli::main());
}
