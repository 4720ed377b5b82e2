package data

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"path/filepath"
	"testing"
)

// benchImageFolder reads a folder of n images per class (10 classes) made
// by enc, reporting images/s; run with -cpu 1 for one core.
func benchImageFolder(b *testing.B, n int, enc func(k int) []byte, ext string, o ImageOptions) {
	root := b.TempDir()
	for c := range 10 {
		for k := range n {
			writeFile(b, root, filepath.Join(fmt.Sprint(c), fmt.Sprintf("%04d%s", k, ext)), enc(c*n+k))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ds, _, err := ReadImageFolder(root, o)
		if err != nil {
			b.Fatal(err)
		}
		if ds.Len() != 10*n {
			b.Fatalf("%d images", ds.Len())
		}
	}
	b.ReportMetric(float64(10*n*b.N)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkReadImageFolderMNIST reads 2,000 28×28 gray PNGs into 28×28
// gray (the MNIST case: decoded and scaled, no resampling).
func BenchmarkReadImageFolderMNIST(b *testing.B) {
	benchImageFolder(b, 200, func(k int) []byte {
		return encodePNG(b, grayImage(28, 28, func(x, y int) uint8 { return uint8((x*y + k) % 256) }))
	}, ".png", ImageOptions{})
}

// BenchmarkReadImageFolderJPEG128 reads 1,000 128×128 colour JPEGs
// (quality 90) resized to 32×32 RGB by Catmull-Rom.
func BenchmarkReadImageFolderJPEG128(b *testing.B) {
	benchImageFolder(b, 100, func(k int) []byte {
		m := image.NewNRGBA(image.Rect(0, 0, 128, 128))
		for y := range 128 {
			for x := range 128 {
				m.SetNRGBA(x, y, color.NRGBA{R: uint8(x + k), G: uint8(y * 2), B: uint8(x ^ y), A: 255})
			}
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90}); err != nil {
			b.Fatal(err)
		}
		return buf.Bytes()
	}, ".jpg", ImageOptions{Width: 32, Height: 32, Channels: 3})
}
