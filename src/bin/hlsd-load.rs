//! `hlsd-load`: simulated HLS viewers against a loopback origin (see `hlsd::loadgen` and
//! benches/README.md). Exit status 0 after a run, whatever its errors (the report counts them);
//! 2 when the run could not start.

use clap::Parser;
use hlsd::loadgen::{run, Args};

/// Raises the soft open-file limit to the hard one (each LL viewer holds two sockets).
fn raise_nofile() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() {
    let args = Args::parse();
    raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hlsd-load: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(report) if args.json => println!("{}", report.json()),
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("hlsd-load: {e}");
            std::process::exit(2);
        }
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
}
