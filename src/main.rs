//! The `shopbridge` binary: parse the command line and hand over to [`shopbridge::cli`].

use clap::Parser;

fn main() {
    let cli = shopbridge::cli::Cli::parse();
    let code = match shopbridge::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
