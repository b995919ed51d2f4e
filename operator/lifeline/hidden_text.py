"""Characters that make text lie about itself on a screen, named once for the models (which refuse
them) and the agent's output (which escapes them). No imports: the agent stays light."""

# Unicode's bidirectional formatting marks: U+202E turns "gpj.exe" around.
BIDI_MARKS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
