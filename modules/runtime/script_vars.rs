//! `$var(x)`: script variables that belong to the process, not to a message.
//! As in Kamailio, a value set while handling one message is still there for
//! the next one the same process handles, and every route run by the process
//! (request, branch, failure, onreply) sees the same set; scripts reset what
//! they rely on.  A thread stands for the process (tests run engines on
//! threads).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::runtime::value::Value;

thread_local! {
    static VARS: RefCell<HashMap<String, Value>> = RefCell::new(HashMap::new());
}

/// The value of `$var(name)`; 0 when never set, as Kamailio reads it.
pub fn get(name: &str) -> Value {
    VARS.with(|v| v.borrow().get(name).cloned().unwrap_or(Value::Int(0)))
}

/// `$var(name) = value`.
pub fn set(name: &str, value: Value) {
    VARS.with(|v| {
        let mut vars = v.borrow_mut();
        match vars.get_mut(name) {
            Some(slot) => *slot = value,
            None => {
                vars.insert(name.to_owned(), value);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outlive_the_message_and_stay_per_thread() {
        assert_eq!(get("x"), Value::Int(0));
        set("x", Value::Str("a".into()));
        assert_eq!(get("x"), Value::Str("a".into()));
        std::thread::spawn(|| assert_eq!(get("x"), Value::Int(0)))
            .join()
            .unwrap();
        set("x", Value::Int(7));
        assert_eq!(get("x"), Value::Int(7));
    }
}
