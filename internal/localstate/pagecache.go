package localstate

// ForgetWrittenFile writes a just-built executable's pages to disk and drops
// them from the page cache, so that its first run maps it as every later
// run does, read back from disk. Pages the linker has just written stay
// cached whole, and a process mapping them then holds more of the file
// resident: the local cluster's node mapped 64 MB of its binary on the run
// after a build against 53 MB later (BENCHMARKS.md, "Idle memory"). Errors
// are ignored: the file is good either way.
func ForgetWrittenFile(path string) { forgetWrittenFile(path) }
