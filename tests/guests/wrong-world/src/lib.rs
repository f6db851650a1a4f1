//! Test guest: a valid component that does not implement `cella:entity` (it exports a lone
//! `run` function from its own world), for the runtime's module validation.

wit_bindgen::generate!({
    inline: "
        package test:other;

        world other {
            export run: func() -> u32;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn run() -> u32 {
        42
    }
}

export!(Other);
