//! Placeholder: the Zabbix external check (being written).
fn main() {}
