package kubernetes

// SetInCluster makes dir where the client finds a pod's service account,
// until the returned function is called.
func SetInCluster(dir string) (restore func()) {
	old := inCluster
	inCluster = dir
	return func() { inCluster = old }
}
