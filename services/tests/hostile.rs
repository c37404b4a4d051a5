//! One abusive client against the production web server (`quake web` on DynamoDB on moto,
//! behind a proxy that counts the store calls): the mix of `common/hostile.rs`, whose bounds it
//! asserts; `make bench` runs the same mix against the release binary.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_abusive_client_does_not_take_the_web_server_down() {
    // gzip: brotli is not optimised in test builds (the bench asks for it).
    let r = common::hostile::run(std::path::Path::new(env!("CARGO_BIN_EXE_quake")), "gzip").await;
    println!("{r:?}");
}
