package agent

import (
	"flag"
	"fmt"
	"path"
	"regexp"
	"strconv"
)

// JobsConfig limits the jobs an agent takes part in and the model lines
// it serves. The zero value accepts every job and line and runs one
// round at a time.
type JobsConfig struct {
	// Allow lists the jobs whose rounds the agent joins, as path.Match
	// patterns ("fraud-*") of the job's name or of its ID (the name and a
	// random suffix); empty accepts every job. Invitations of other jobs
	// are declined with a reason the job's status shows.
	Allow []string `json:"allow,omitempty"`
	// Models lists the model lines (model names, path.Match patterns)
	// the agent serves and trains; empty accepts every line. The agent
	// tells the coordinator which lines it declines, and leaves a round
	// whose model is not among them.
	Models []string `json:"models,omitempty"`
	// Threads is how many CPU threads one job's training may use. An
	// external trainer gets it as FEDGE_THREADS and the usual thread
	// variables of numeric libraries (OMP_NUM_THREADS, MKL_NUM_THREADS,
	// OPENBLAS_NUM_THREADS); fedge's engine runs that training's matrix
	// products and convolution shards on at most Threads goroutines
	// (tensor.TrainConfig.Threads), while serving keeps the process's
	// threads (Config.Threads). Zero sets nothing: the process's threads.
	Threads int `json:"threads,omitempty"`
	// Concurrent is how many rounds of different jobs the agent runs at
	// the same time, so how many trainings may overlap; zero means 1: a
	// round's training never shares the CPU with another job's.
	Concurrent int `json:"concurrent,omitempty"`
}

// validate checks the patterns and bounds.
func (j *JobsConfig) validate() error {
	for _, list := range [][]string{j.Allow, j.Models} {
		for _, p := range list {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				return fmt.Errorf("pattern %q is not a valid glob", p)
			}
		}
	}
	if j.Threads < 0 || j.Concurrent < 0 {
		return fmt.Errorf("threads and concurrent must be >= 0, got %d and %d", j.Threads, j.Concurrent)
	}
	return nil
}

// concurrent returns how many rounds may run at once.
func (j *JobsConfig) concurrent() int { return max(1, j.Concurrent) }

// jobSuffix is the random suffix the coordinator adds to a job's name to
// make its ID.
var jobSuffix = regexp.MustCompile(`-[0-9a-f]{12}$`)

// acceptsJob reports whether the agent joins rounds of job id.
func (j *JobsConfig) acceptsJob(id string) bool {
	return matchAny(j.Allow, id) || matchAny(j.Allow, jobSuffix.ReplaceAllString(id, ""))
}

// acceptsModel reports whether the agent serves and trains model line.
func (j *JobsConfig) acceptsModel(line string) bool { return matchAny(j.Models, line) }

// matchAny reports whether name matches one of patterns, or patterns is
// empty.
func matchAny(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// threadEnv is the environment that caps an external trainer's threads.
func (j *JobsConfig) threadEnv() []string {
	if j.Threads <= 0 {
		return nil
	}
	n := strconv.Itoa(j.Threads)
	return []string{"FEDGE_THREADS=" + n, "OMP_NUM_THREADS=" + n, "MKL_NUM_THREADS=" + n, "OPENBLAS_NUM_THREADS=" + n}
}

// jobsFlags registers the flags of Config.Jobs.
func jobsFlags(fs *flag.FlagSet, c *Config) {
	fs.Var(&flagValue{set: func(s string) error { c.Jobs.Allow = splitList(s); return nil }}, "jobs-allow",
		"comma-separated patterns of the job names whose rounds the agent joins, e.g. fraud-* (empty = every job) (JSON jobs.allow)")
	fs.Var(&flagValue{set: func(s string) error { c.Jobs.Models = splitList(s); return nil }}, "jobs-models",
		"comma-separated patterns of the model lines the agent serves and trains (empty = every line) (JSON jobs.models)")
	fs.Var(&flagValue{set: intSetter(&c.Jobs.Threads)}, "jobs-threads",
		"CPU threads one job's training may use, in the engine or an external trainer (0 = not set) (JSON jobs.threads)")
	fs.Var(&flagValue{set: intSetter(&c.Jobs.Concurrent)}, "jobs-concurrent",
		"rounds of different jobs the agent runs at once (0 = 1: trainings never overlap) (JSON jobs.concurrent)")
}
