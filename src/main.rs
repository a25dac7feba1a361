fn main() -> std::process::ExitCode {
    berqenas::cli::main()
}
