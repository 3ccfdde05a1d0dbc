use clap::Parser;

fn main() {
    let args = pipe::cli::Args::parse();
    if let Err(e) = pipe::cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(pipe::exit_code(e.kind()));
    }
}
