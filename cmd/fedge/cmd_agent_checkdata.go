package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
)

var agentCheckDataSpec = cmdSpec{
	path: "agent check-data",
	help: `Check an agent's local data before enrolling it: load the dataset of
-config as the agent would at start-up and print the schema it would report,
row and class counts and missing cells per column; with -job, a job file,
preview what the job's data.columns rules would do to this host's training
rows (with this host's mean, median and quantiles: the job uses the
federation's). Nothing is sent anywhere. Exits 1, naming the file, line and
column, on data the agent cannot read or the job's rules cannot use; 2 on a
bad configuration or job file.`,
	example: `fedge agent check-data -config /etc/fedge/agent.json -job job.json`,
}

func runAgentCheckData(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, agentCheckDataSpec, false)
	path := c.fs.String("config", "", "agent configuration file (JSON)")
	jobPath := c.fs.String("job", "", "job file whose data.columns rules to preview (JSON)")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *path == "" {
		return c.usageFail(errors.New("-config is required"))
	}
	cfg, err := agent.LoadConfig(*path)
	if err != nil {
		return c.inputFail(err)
	}
	var job api.JobSpec
	if *jobPath != "" {
		b, err := os.ReadFile(*jobPath)
		if err != nil {
			return c.inputFail(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&job); err != nil {
			return c.inputFail(fmt.Errorf("%s: %w", *jobPath, err))
		}
	}
	if err := agent.CheckData(stdout, &cfg.Dataset, job.Data.Columns); err != nil {
		if errors.Is(err, agent.ErrConfig) {
			return c.inputFail(err)
		}
		fmt.Fprintf(stderr, "fedge agent check-data: %v\n", err)
		return exitFailed
	}
	return exitOK
}
