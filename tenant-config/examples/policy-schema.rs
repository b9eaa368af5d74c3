//! Prints the JSON Schema of Okra's outbound policy (`okra.json`).

fn main() {
    print!("{}", tenant_config::policy::json_schema());
}
