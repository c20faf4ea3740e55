fn main() -> std::process::ExitCode {
    airlift::app::run()
}
