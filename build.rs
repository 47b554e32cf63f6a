// `sqlx::migrate!` embeds the migrations at compile time; without this a new migration file
// would not rebuild the crate (cargo only tracks the files the compiler read).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
