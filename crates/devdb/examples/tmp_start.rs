#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let t = std::time::Instant::now();
    let result = if args.get(2).map(String::as_str) == Some("test") {
        callers_devdb::PrivatePostgres::start_for_tests(dir, None).await
    } else {
        callers_devdb::PrivatePostgres::start(dir, None).await
    };
    match result {
        Ok(pg) => println!(
            "url={} started_here={} in {:?}",
            pg.url(),
            pg.started_here(),
            t.elapsed()
        ),
        Err(e) => println!("error: {e}"),
    }
}
