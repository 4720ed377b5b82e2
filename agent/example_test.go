package agent_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedge/fedge/agent"
)

// Example_configAndFlags shows how `fedge agent -config agent.json [-flags]`
// layers command-line flags over the configuration file.
func Example_configAndFlags() {
	dir, _ := os.MkdirTemp("", "fedge-example")
	defer os.RemoveAll(dir)
	csv := filepath.Join(dir, "data.csv")
	_ = os.WriteFile(csv, []byte("x,y,label\n1,2,a\n3,4,b\n"), 0o600)
	path := filepath.Join(dir, "agent.json")
	_ = os.WriteFile(path, []byte(`{
		"coordinators": ["coord-1.example.net:7000"],
		"data_dir": "`+filepath.Join(dir, "state")+`",
		"dataset": {"kind": "csv", "path": "`+csv+`", "label_column": "label"},
		"training_window": "22:00-06:00",
		"threads": 4
	}`), 0o600)

	cfg := agent.DefaultConfig()
	fs := flag.NewFlagSet("fedge agent", flag.ContinueOnError)
	agent.Flags(fs, &cfg)
	config := fs.String("config", "", "agent configuration file (JSON)")
	if err := fs.Parse([]string{"-config", path, "-threads", "2", "-labels", "region=eu"}); err != nil {
		fmt.Println(err)
		return
	}
	loaded, err := agent.LoadConfig(*config)
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg = loaded
	fs.Visit(func(f *flag.Flag) { _ = f.Value.Set(f.Value.String()) }) // flags win
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Coordinators, cfg.Threads, cfg.Labels, cfg.TrainingWindow, cfg.InferenceListen, cfg.Dataset.HeldOut)
	// Output: [coord-1.example.net:7000] 2 map[region:eu] 22:00-06:00 127.0.0.1:8080 0.1
}
