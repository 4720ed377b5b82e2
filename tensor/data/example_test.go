package data_test

import (
	"fmt"
	"strings"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

func ExampleReadCSV() {
	in := "sepal,petal,species\n5.1,1.4,setosa\n6.3,NA,virginica\n5.8,4.1,versicolor\n"
	tab, err := data.ReadCSV(strings.NewReader(in), data.CSVOptions{Label: "species", Missing: data.MissingMean})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tab.Features, tab.Classes, tab.Imputed)
	fmt.Println(tab.Data.X, tab.Data.Y)
	// Output:
	// [sepal petal] [setosa versicolor virginica] 1
	// [5.1 1.4 6.3 2.75 5.8 4.1] [0 2 1]
}

// Two clients standardize with statistics whose sum is all the server
// learns: each exports Vector(), the secure aggregation adds them.
func ExampleStats_Vector() {
	clientA := &tensor.Dataset{X: []float32{1, 2, 3}, Y: []int32{0, 0, 0}, Shape: []int{1}, Classes: 1}
	clientB := &tensor.Dataset{X: []float32{5, 9}, Y: []int32{0, 0}, Shape: []int{1}, Classes: 1}
	va, vb := data.ComputeStats(clientA).Vector(), data.ComputeStats(clientB).Vector()
	sum := make([]float64, len(va))
	for i := range sum {
		sum[i] = va[i] + vb[i] // done under secure aggregation in fedge
	}
	global, _ := data.StatsFromVector(sum)
	st := data.NewStandardizer(global)
	fmt.Printf("count %v mean %v var %v\n", global.Count[0], global.Mean(0), global.Var(0))
	_ = st.Transform(clientA)
	fmt.Printf("%.3f\n", clientA.X)
	// Output:
	// count 5 mean 4 var 8
	// [-1.061 -0.707 -0.354]
}

func ExamplePartitionPathological() {
	// 4 classes of 10 examples cut into 8 shards of 5: two per client.
	labels := make([]int32, 40)
	for i := range labels {
		labels[i] = int32(i / 10)
	}
	parts, _ := data.PartitionPathological(labels, 4, 2, 1)
	for c, p := range parts {
		seen := map[int32]bool{}
		for _, i := range p {
			seen[labels[i]] = true
		}
		fmt.Printf("client %d: %d examples, at most 2 classes: %v\n", c, len(p), len(seen) <= 2)
	}
	// Output:
	// client 0: 10 examples, at most 2 classes: true
	// client 1: 10 examples, at most 2 classes: true
	// client 2: 10 examples, at most 2 classes: true
	// client 3: 10 examples, at most 2 classes: true
}
