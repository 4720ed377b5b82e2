package data

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fedge/fedge/tensor"
)

// MNIST file names, as published by LeCun et al.; LoadMNIST also accepts
// each with a ".gz" suffix.
const (
	MNISTTrainImages = "train-images-idx3-ubyte"
	MNISTTrainLabels = "train-labels-idx1-ubyte"
	MNISTTestImages  = "t10k-images-idx3-ubyte"
	MNISTTestLabels  = "t10k-labels-idx1-ubyte"
)

// LoadMNIST reads the MNIST training (60,000) and test (10,000) sets from
// dir, which holds the four IDX files, raw or gzip-compressed. Pixels are
// scaled to [0,1]; each example has Shape [1 28 28] and Classes is 10.
// The two sets are decoded concurrently.
func LoadMNIST(dir string) (train, test *tensor.Dataset, err error) {
	type result struct {
		ds  *tensor.Dataset
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ds, err := loadMNISTPair(dir, MNISTTestImages, MNISTTestLabels)
		ch <- result{ds, err}
	}()
	train, err = loadMNISTPair(dir, MNISTTrainImages, MNISTTrainLabels)
	res := <-ch
	if err != nil {
		return nil, nil, fmt.Errorf("data.LoadMNIST: %w", err)
	}
	if res.err != nil {
		return nil, nil, fmt.Errorf("data.LoadMNIST: %w", res.err)
	}
	return train, res.ds, nil
}

func loadMNISTPair(dir, imagesName, labelsName string) (*tensor.Dataset, error) {
	var img *IDXImages
	var lab []byte
	err := withIDXFile(dir, imagesName, func(f *os.File) (err error) {
		img, err = ReadIDXImages(f)
		return err
	})
	if err != nil {
		return nil, err
	}
	err = withIDXFile(dir, labelsName, func(f *os.File) (err error) {
		lab, err = ReadIDXLabels(f)
		return err
	})
	if err != nil {
		return nil, err
	}
	if img.Rows != 28 || img.Cols != 28 {
		return nil, fmt.Errorf("%s: %d×%d images, want 28×28: %w", imagesName, img.Rows, img.Cols, ErrFormat)
	}
	ds, err := IDXDataset(img, lab, 10)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", imagesName, err)
	}
	return ds, nil
}

// withIDXFile opens dir/name, or dir/name.gz if the former does not exist.
func withIDXFile(dir, name string, read func(*os.File) error) error {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		path += ".gz"
		f, err = os.Open(path)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := read(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// IDXDataset joins decoded images and labels into a Dataset: pixels scaled
// from [0,255] to [0,1], Shape [1 rows cols]. Counts must match and every
// label must be below classes.
func IDXDataset(images *IDXImages, labels []byte, classes int) (*tensor.Dataset, error) {
	if images.Count != len(labels) {
		return nil, fmt.Errorf("data.IDXDataset: %d images but %d labels: %w", images.Count, len(labels), ErrMismatch)
	}
	if len(images.Pixels) != images.Count*images.Rows*images.Cols {
		return nil, fmt.Errorf("data.IDXDataset: %d pixels for %d %d×%d images: %w", len(images.Pixels), images.Count, images.Rows, images.Cols, ErrMismatch)
	}
	y := make([]int32, len(labels))
	for i, l := range labels {
		if int(l) >= classes {
			return nil, fmt.Errorf("data.IDXDataset: label %d of example %d not below %d classes: %w", l, i, classes, ErrFormat)
		}
		y[i] = int32(l)
	}
	var scale [256]float32
	for i := range scale {
		scale[i] = float32(i) / 255
	}
	x := make([]float32, len(images.Pixels))
	for i, p := range images.Pixels {
		x[i] = scale[p]
	}
	return &tensor.Dataset{X: x, Y: y, Shape: []int{1, images.Rows, images.Cols}, Classes: classes}, nil
}
