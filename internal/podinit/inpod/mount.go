package inpod

// Mount is one entry of a container's filesystem view besides the system
// directories: a volume (or a file of one) at its mountPath.
type Mount struct {
	Source    string `json:"source,omitempty"` // host path of a file or directory; empty when Tmpfs
	Target    string `json:"target"`           // absolute path inside the container
	ReadOnly  bool   `json:"readOnly,omitempty"`
	Tmpfs     bool   `json:"tmpfs,omitempty"`     // a fresh tmpfs (emptyDir medium Memory)
	SizeLimit int64  `json:"sizeLimit,omitempty"` // bytes, for Tmpfs; 0: the kernel's default
}
