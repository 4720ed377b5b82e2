package api_test

import (
	"context"
	"fmt"
	"log"

	"github.com/fedge/fedge/coordinator/api"
)

// A Go program starts a job and reads its rounds with the api package
// alone. (It needs a running cluster, so this example is compiled but not
// run; examples/api-client is the full program, tested against a cluster.)
func Example() {
	ctx := context.Background()
	c, err := api.Load("cluster/admin", []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	job, err := c.Jobs().Start(ctx, api.JobSpec{Name: "mnist", Model: "2nn", Rounds: 5, MinClients: 3, SecAgg: api.SecAggSpec{Enabled: true}})
	if err != nil {
		log.Fatal(err)
	}
	rounds, err := c.Rounds().List(ctx, api.RoundsRequest{Job: job.ID}, api.QueryOptions{Consistent: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rounds {
		fmt.Println(r.Number, r.State, r.Metrics["train_loss"])
	}
}
